/* watch: tells when a file's content has changed, for `watch_config`.
 *
 * inotify (uv_fs_event) watches both the file and its directory: an editor
 * that saves by writing a new file and renaming it over the old one, and a
 * Kubernetes ConfigMap volume (the file is a symlink through `..data`, which
 * the kubelet swaps atomically), replace the inode, so a watch on the file
 * alone would go quiet after the first change. Any event starts a 1 s timer
 * (events while it runs join that change); when it fires, the file is read
 * and ON_CHANGE runs only if its content differs from the last content seen,
 * so other files changing in the directory cost a read and nothing else. */
#ifndef FERRY_WATCH_H
#define FERRY_WATCH_H

#include <uv.h>

#define WATCH_DEBOUNCE_MS 1000

struct watch;

/* Starts watching PATH on LOOP; ON_CHANGE(ARG) runs on LOOP. The content
 * now is the baseline. NULL when the directory cannot be watched (logged). */
struct watch *watch_start(uv_loop_t *loop, const char *path, void (*on_change)(void *arg),
                          void *arg);
/* Stops and frees W (after its handles' close callbacks); NULL is fine. */
void watch_stop(struct watch *w);

#endif
