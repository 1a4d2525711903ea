/* listener: see listener.h.
 *
 * Running out of descriptors on accept (EMFILE/ENFILE) must neither kill the
 * process nor spin the loop: libuv keeps one spare descriptor per loop and,
 * on EMFILE, frees it, accepts and closes the pending connections, and takes
 * it back, so the backlog drains and the listener stops firing. We log it
 * (at most once a second per listener) and keep serving; when descriptors
 * free up, accepting works again by itself. */
#include "ferry/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ferry/config.h"
#include "ferry/conn.h"
#include "ferry/log.h"
#include "ferry/stats.h"
#include "ferry/worker_ctx.h"

static void listener_on_connection(uv_stream_t *server, int status);

int listener_resolve(const struct config_addr *a, struct sockaddr_storage *ss, socklen_t *len) {
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    /* ":PORT" means every address: "::" accepts v4 too unless v6 is off. */
    const char *host = a->host[0] ? a->host : "::";
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 && !a->host[0]) rc = getaddrinfo("0.0.0.0", port, &hints, &res);
    if (rc != 0) return rc == EAI_SYSTEM ? -errno : UV_EAI_NONAME;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int listener_inet_socket(const struct sockaddr_storage *ss, socklen_t len, bool dual,
                                bool reuseport, unsigned backlog) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int on = 1, off = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &off : &on, sizeof(int));
    /* Accepted sockets inherit it from the listener: one setsockopt here
     * instead of one per connection. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, (int)backlog) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static int listener_open_inet(const struct config_listener *cl, unsigned nworkers, int *fds) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int err = listener_resolve(&cl->bind, &ss, &len);
    if (err < 0) return err;
    bool dual = cl->bind.host[0] == '\0';
    for (unsigned i = 0; i < nworkers; i++) {
        int fd = listener_inet_socket(&ss, len, dual, nworkers > 1, cl->backlog);
        if (fd < 0) {
            while (i > 0) close(fds[--i]);
            return fd;
        }
        fds[i] = fd;
        /* Port 0: the kernel chose one; the other workers must join it. */
        if (i == 0) getsockname(fd, (struct sockaddr *)&ss, &len);
    }
    return 0;
}

/* A socket file left by a process that is gone would make bind fail; remove
 * it, but only when nobody answers on it (never steal a live socket). */
static void listener_remove_stale(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 && errno == ECONNREFUSED)
        unlink(path);
    close(fd);
}

static int listener_open_unix(const struct config_listener *cl, unsigned nworkers, int *fds) {
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(cl->bind.path) >= sizeof(sun.sun_path)) return UV_ENAMETOOLONG;
    memcpy(sun.sun_path, cl->bind.path, strlen(cl->bind.path) + 1);
    listener_remove_stale(cl->bind.path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, (int)cl->backlog) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    fds[0] = fd;
    for (unsigned i = 1; i < nworkers; i++) {
        fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (fds[i] < 0) {
            int err = -errno;
            while (i > 0) close(fds[--i]);
            return err;
        }
    }
    return 0;
}

int listener_open(const struct config_listener *cl, unsigned nworkers, int *fds, char *err,
                  size_t errlen) {
    int rc = cl->bind.kind == ADDR_UNIX ? listener_open_unix(cl, nworkers, fds)
                                        : listener_open_inet(cl, nworkers, fds);
    if (rc < 0) snprintf(err, errlen, "listener %s: bind %s: %s", cl->name, cl->bind.text,
                         uv_strerror(rc));
    return rc;
}

/* The listener is freed when the last of its handles (the listening one,
 * and the reject handle when in use) has closed. */
static void listener_unref(struct listener *l) {
    if (--l->handles == 0) free(l);
}

static void listener_on_closed(uv_handle_t *h) {
    listener_unref(h->data);
}

struct listener *listener_start(struct worker_ctx *ctx, const struct config_listener *cl, int fd) {
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        return NULL;
    }
    l->cfg = cl;
    l->ctx = ctx;
    l->stats = stats_node(ctx->stats, STATS_LISTENER, cl->name, NULL);
    int err;
    if (cl->bind.kind == ADDR_UNIX) {
        uv_pipe_init(ctx->loop, &l->h.pipe, 0);
        err = uv_pipe_open(&l->h.pipe, fd);
    } else {
        uv_tcp_init(ctx->loop, &l->h.tcp);
        err = uv_tcp_open(&l->h.tcp, fd);
    }
    /* A handle closes only a descriptor it adopted: one that failed to
     * open it leaves it to us. After a successful open, uv_close owns it. */
    if (err < 0) close(fd);
    l->open = true;
    l->handles = 1;
    l->h.handle.data = l;
    if (err == 0) err = uv_listen(&l->h.stream, (int)cl->backlog, listener_on_connection);
    if (err < 0) {
        log_error("listener %s: %s", cl->name, uv_strerror(err));
        listener_close(l);
        return NULL;
    }
    return l;
}

void listener_close(struct listener *l) {
    if (!l->open) return;
    l->open = false;
    uv_close(&l->h.handle, listener_on_closed);
}

void listener_unlink(const struct config_listener *cl) {
    if (cl->bind.kind == ADDR_UNIX) unlink(cl->bind.path);
}

static void listener_on_rejected(uv_handle_t *h) {
    struct listener *l = h->data;
    l->rejecting = false;
    bool again = l->reject_waiting && l->open;
    l->reject_waiting = false;
    if (again) listener_on_connection(&l->h.stream, 0);
    listener_unref(l);
}

/* A connection ferry has no memory for is still accepted, into the reject
 * handle, and closed at once: left pending, it would make libuv stop
 * polling this listener until someone accepts it, which nobody would. While
 * the reject handle is closing, the next one waits for it. */
static void listener_reject(struct listener *l) {
    if (l->rejecting) {
        l->reject_waiting = true;
        return;
    }
    int err = l->cfg->bind.kind == ADDR_UNIX ? uv_pipe_init(l->h.handle.loop, &l->reject.pipe, 0)
                                             : uv_tcp_init(l->h.handle.loop, &l->reject.tcp);
    if (err < 0) return; /* cannot happen: no socket is made until the accept */
    l->rejecting = true;
    l->handles++;
    l->reject.handle.data = l;
    if (uv_accept(&l->h.stream, &l->reject.stream) == 0 && l->cfg->bind.kind != ADDR_UNIX) {
        uv_tcp_close_reset(&l->reject.tcp, listener_on_rejected);
        return;
    }
    uv_close(&l->reject.handle, listener_on_rejected);
}

static void listener_on_connection(uv_stream_t *server, int status) {
    struct listener *l = server->data;
    if (status < 0) {
        static _Thread_local uint64_t last_warned;
        uint64_t now = uv_now(server->loop);
        if (now - last_warned >= 1000 || last_warned == 0) {
            last_warned = now;
            log_error("listener %s: accept: %s (connections dropped until descriptors free up)",
                      l->cfg->name, uv_strerror(status));
        }
        return;
    }
    if (!l->open) return;
    if (conn_accept(l) < 0) listener_reject(l);
}
