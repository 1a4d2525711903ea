/* watch: a file's content changed; see watch.h. */
#include "ferry/watch.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/log.h"
#include "ferry/util.h"

struct watch {
    uv_fs_event_t dir;   /* the directory: renames, symlink swaps */
    uv_fs_event_t file;  /* the file (its target when a symlink), re-armed per change */
    uv_timer_t debounce; /* WATCH_DEBOUNCE_MS after the first event of a change */
    char *path;
    char *dirpath;
    void (*on_change)(void *arg);
    void *arg;
    uint64_t hash;   /* of the content last seen; 0: unreadable */
    int open;        /* handles still to close */
    bool file_armed; /* `file` is started */
};

static void watch_on_event(uv_fs_event_t *h, const char *name, int events, int status);

/* FNV-1a over the file's bytes; 0 when it cannot be read (a rename in
 * progress, a swap half done): the next event reads it again. */
static uint64_t watch_hash(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint64_t h = 1469598103934665603ull;
    unsigned char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        for (size_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
    fclose(f);
    return h ? h : 1;
}

/* (Re)watches the file itself: after a rename or a swap the old inode is
 * gone and its watch with it. A file that does not exist now is left to the
 * directory's watch. */
static void watch_arm_file(struct watch *w) {
    if (w->file_armed) uv_fs_event_stop(&w->file);
    w->file_armed = uv_fs_event_start(&w->file, watch_on_event, w->path, 0) == 0;
}

static void watch_on_debounce(uv_timer_t *t) {
    struct watch *w = t->data;
    watch_arm_file(w);
    uint64_t h = watch_hash(w->path);
    if (h == 0 || h == w->hash) return;
    w->hash = h;
    log_info("watch_config: %s changed; reloading", w->path);
    w->on_change(w->arg);
}

static void watch_on_event(uv_fs_event_t *h, const char *name, int events, int status) {
    FERRY_UNUSED(name);
    FERRY_UNUSED(events);
    struct watch *w = h->data;
    if (status < 0) {
        log_warn("watch_config: %s: %s", w->path, uv_strerror(status));
        return;
    }
    if (!uv_is_active((uv_handle_t *)&w->debounce))
        uv_timer_start(&w->debounce, watch_on_debounce, WATCH_DEBOUNCE_MS, 0);
}

static char *watch_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    size_t n = (size_t)(slash - path);
    char *d = xmalloc(n + 1);
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

struct watch *watch_start(uv_loop_t *loop, const char *path, void (*on_change)(void *arg),
                          void *arg) {
    struct watch *w = xcalloc(1, sizeof(*w));
    w->path = xstrdup(path);
    w->dirpath = watch_dirname(path);
    w->on_change = on_change;
    w->arg = arg;
    w->hash = watch_hash(path);
    uv_fs_event_init(loop, &w->dir);
    uv_fs_event_init(loop, &w->file);
    uv_timer_init(loop, &w->debounce);
    w->dir.data = w->file.data = w->debounce.data = w;
    w->open = 3;
    int err = uv_fs_event_start(&w->dir, watch_on_event, w->dirpath, 0);
    if (err < 0) {
        log_error("watch_config: cannot watch %s: %s; reload with SIGHUP", w->dirpath,
                  uv_strerror(err));
        watch_stop(w);
        return NULL;
    }
    watch_arm_file(w);
    return w;
}

static void watch_on_closed(uv_handle_t *h) {
    struct watch *w = h->data;
    if (--w->open > 0) return;
    free(w->path);
    free(w->dirpath);
    free(w);
}

void watch_stop(struct watch *w) {
    if (!w) return;
    uv_close((uv_handle_t *)&w->dir, watch_on_closed);
    uv_close((uv_handle_t *)&w->file, watch_on_closed);
    uv_close((uv_handle_t *)&w->debounce, watch_on_closed);
}
