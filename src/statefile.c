/* statefile: private files in state_dir; see statefile.h. */
#include "ferry/statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *statefile_path(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

/* mkdir -p DIR, the directories made 0700 (they hold private keys). */
int statefile_mkdir(const char *dir, char *err, size_t len) {
    char path[4096];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            snprintf(err, len, "state_dir %s: cannot create %s: %s", dir, path, strerror(errno));
            return -1;
        }
        *p = saved;
        if (!saved) break;
    }
    return 0;
}

/* Writes PATH with mode 0600 through a temporary file and a rename. WRITE
 * puts the PEM into the stream. */
int statefile_write(const char *path, int (*write)(FILE *f, void *obj), void *obj) {
    size_t n = strlen(path) + 8;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
    if (!f) {
        if (fd >= 0) close(fd);
        free(tmp);
        return -1;
    }
    int ok = write(f, obj) == 1 && fflush(f) == 0 && fsync(fd) == 0;
    ok = fclose(f) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) unlink(tmp);
    free(tmp);
    return ok ? 0 : -1;
}

