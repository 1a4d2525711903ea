/* statefile: files ferry keeps in state_dir (keys, certificates).
 *
 * Everything there is private: directories are made 0700 and files 0600,
 * and a file is written under a temporary name and renamed into place, so
 * a crash or a full disk never leaves half a key where a whole one was. */
#ifndef FERRY_STATEFILE_H
#define FERRY_STATEFILE_H

#include <stddef.h>
#include <stdio.h>

#include "ferry/util.h"

/* mkdir -p DIR, each directory it makes 0700. 0, or -1 with a message
 * (naming DIR) in ERR. */
int statefile_mkdir(const char *dir, char *err, size_t len) FERRY_MUSTCHECK;

/* Writes PATH, mode 0600, through PATH.tmp and a rename. WRITE puts the
 * content into the stream and returns 1 on success (OpenSSL's PEM_write_*
 * convention). 0, or -1 with errno set. */
int statefile_write(const char *path, int (*write)(FILE *f, void *obj), void *obj) FERRY_MUSTCHECK;

/* DIR/FILE, allocated. */
char *statefile_path(const char *dir, const char *file);

#endif
