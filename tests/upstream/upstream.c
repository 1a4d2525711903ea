/* upstream.c - ferry-upstream: command line, listeners, signals.
 *
 *   ferry-upstream [--listen HOST:PORT | --listen unix:/path]... [--name NAME]
 *                  [--port-file FILE] [--tcp-echo]
 *
 * A test and demo HTTP/1.1 upstream for ferry (see conn.c for the
 * connection model, http.c for the endpoints). After every listener is bound
 * it prints each bound address on its own line ("127.0.0.1:40123",
 * "[::1]:40123", "unix:/path") and flushes, so a test that asked for port 0
 * can read the real one; --port-file gets the ports (or socket paths) too,
 * written atomically before stdout. SIGTERM/SIGINT close everything and exit 0. */
#include "upstream.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LISTEN_MAX 16

struct upstream_globals g_up;

struct listener {
    union {
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;              /* the listening socket */
    const char *spec; /* --listen value */
    int is_pipe;      /* unix:/path */
    char bound[128];  /* what we print: HOST:PORT or unix:/path */
    char port[64];    /* what --port-file gets: the port or the path */
};

static struct listener g_listeners[LISTEN_MAX];
static int g_nlisteners;
static int g_echo_mode;
static uv_signal_t g_sigterm, g_sigint;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: ferry-upstream [--listen HOST:PORT | --listen unix:/path]... [--name NAME]\n"
        "                      [--port-file FILE] [--tcp-echo]\n"
        "  --listen     address to serve (repeatable; port 0 = any; default 127.0.0.1:3000)\n"
        "  --name       reported as \"server\" in JSON and as X-Upstream-Name (default: hostname)\n"
        "  --port-file  write the bound port (or socket path) of each listener here, one a line\n"
        "  --tcp-echo   raw TCP echo server instead of HTTP\n");
}

static void on_connection(uv_stream_t *server, int status) {
    struct listener *l = server->data;
    if (status < 0) {
        fprintf(stderr, "ferry-upstream: accept on %s: %s\n", l->spec, uv_strerror(status));
        return;
    }
    if (g_echo_mode)
        echo_accept(server, l->is_pipe);
    else
        conn_accept(server, l->is_pipe);
}

/* Binds a TCP listener: HOST:PORT, [V6]:PORT or :PORT (all IPv4 addresses).
 * HOST may be a name; the first address it resolves to is used. */
static int listen_tcp(struct listener *l) {
    char host[256];
    const char *colon = strrchr(l->spec, ':');
    const char *h = l->spec;
    size_t hlen = colon ? (size_t)(colon - h) : 0;
    if (colon == NULL || colon[1] == '\0') {
        fprintf(stderr, "ferry-upstream: --listen %s: expected HOST:PORT or unix:/path\n", l->spec);
        return -1;
    }
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof host) hlen = sizeof host - 1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(hlen ? host : "0.0.0.0", colon + 1, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "ferry-upstream: --listen %s: %s\n", l->spec, gai_strerror(gai));
        return -1;
    }
    uv_tcp_init(g_up.loop, &l->h.tcp);
    int err = uv_tcp_bind(&l->h.tcp, ai->ai_addr, 0);
    freeaddrinfo(ai);
    if (err == 0) err = uv_listen(&l->h.stream, 1024, on_connection);
    if (err < 0) {
        fprintf(stderr, "ferry-upstream: listen %s: %s\n", l->spec, uv_strerror(err));
        return -1;
    }

    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &sslen);
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        snprintf(l->bound, sizeof l->bound, "[%s]:%d", ip, port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(l->bound, sizeof l->bound, "%s:%d", ip, port);
    }
    snprintf(l->port, sizeof l->port, "%d", port);
    return 0;
}

/* Binds unix:/path, replacing a stale socket file left by an earlier run. */
static int listen_unix(struct listener *l) {
    const char *path = l->spec + 5;
    uv_pipe_init(g_up.loop, &l->h.pipe, 0);
    unlink(path);
    int err = uv_pipe_bind(&l->h.pipe, path);
    if (err == 0) err = uv_listen(&l->h.stream, 1024, on_connection);
    if (err < 0) {
        fprintf(stderr, "ferry-upstream: listen %s: %s\n", l->spec, uv_strerror(err));
        return -1;
    }
    snprintf(l->bound, sizeof l->bound, "%s", l->spec);
    snprintf(l->port, sizeof l->port, "%s", path);
    return 0;
}

/* Writes FILE.tmp then renames it, so a reader never sees half a file. */
static int write_port_file(const char *file) {
    size_t n = strlen(file) + 5;
    char *tmp = malloc(n);
    if (tmp == NULL) return -1;
    snprintf(tmp, n, "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "ferry-upstream: %s: %s\n", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    for (int i = 0; i < g_nlisteners; i++)
        fprintf(f, "%s\n", g_listeners[i].port);
    int bad = fclose(f) != 0 || rename(tmp, file) != 0;
    if (bad) fprintf(stderr, "ferry-upstream: %s: %s\n", file, strerror(errno));
    free(tmp);
    return bad ? -1 : 0;
}

static void on_close_noop(uv_handle_t *h) {
    (void)h;
}

/* SIGTERM/SIGINT: close listeners, connections and the signal handles; the
 * loop then runs out of handles and main() returns 0. */
static void on_signal(uv_signal_t *s, int signum) {
    (void)s;
    (void)signum;
    if (g_up.stopping) return;
    g_up.stopping = 1;
    for (int i = 0; i < g_nlisteners; i++)
        uv_close((uv_handle_t *)&g_listeners[i].h, on_close_noop);
    conn_close_all();
    echo_close_all();
    uv_close((uv_handle_t *)&g_sigterm, on_close_noop);
    uv_close((uv_handle_t *)&g_sigint, on_close_noop);
}

/* The name goes into a header as is and into JSON escaped: no control bytes. */
static int name_ok(const char *s) {
    if (*s == '\0' || strlen(s) > 200) return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
    return 1;
}

static char *json_quote(const char *s) {
    char *out = malloc(2 * strlen(s) + 3), *o = out;
    if (out == NULL) abort();
    *o++ = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') *o++ = '\\';
        *o++ = *s;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

/* Accepts "--opt VALUE" and "--opt=VALUE"; returns the value or NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *opt) {
    size_t k = strlen(opt);
    if (strncmp(argv[*i], opt, k) != 0) return NULL;
    if (argv[*i][k] == '=') return argv[*i] + k + 1;
    if (argv[*i][k] != '\0') return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "ferry-upstream: %s needs a value\n", opt);
        exit(2);
    }
    return argv[++*i];
}

int main(int argc, char **argv) {
    static char hostname[256];
    const char *port_file = NULL, *v;
    for (int i = 1; i < argc; i++) {
        if ((v = opt_value(argc, argv, &i, "--listen")) != NULL) {
            if (g_nlisteners == LISTEN_MAX) {
                fprintf(stderr, "ferry-upstream: at most %d --listen\n", LISTEN_MAX);
                return 2;
            }
            g_listeners[g_nlisteners].spec = v;
            g_listeners[g_nlisteners++].is_pipe = strncmp(v, "unix:", 5) == 0;
        } else if ((v = opt_value(argc, argv, &i, "--name")) != NULL) {
            g_up.name = v;
        } else if ((v = opt_value(argc, argv, &i, "--port-file")) != NULL) {
            port_file = v;
        } else if (strcmp(argv[i], "--tcp-echo") == 0) {
            g_echo_mode = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "ferry-upstream: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (g_nlisteners == 0) {
        g_listeners[0].spec = "127.0.0.1:3000";
        g_nlisteners = 1;
    }
    if (g_up.name == NULL) {
        if (gethostname(hostname, sizeof hostname - 1) != 0 || hostname[0] == '\0')
            snprintf(hostname, sizeof hostname, "upstream");
        g_up.name = hostname;
    }
    if (!name_ok(g_up.name)) {
        fprintf(stderr, "ferry-upstream: --name must be 1..200 printable characters\n");
        return 2;
    }
    g_up.name_len = strlen(g_up.name);
    g_up.name_json = json_quote(g_up.name);
    pattern_init();

    signal(SIGPIPE, SIG_IGN);
    g_up.loop = uv_default_loop();
    for (int i = 0; i < g_nlisteners; i++) {
        struct listener *l = &g_listeners[i];
        l->h.stream.data = l;
        if ((l->is_pipe ? listen_unix(l) : listen_tcp(l)) < 0) return 1;
    }
    /* the port file first: whoever saw our stdout line may read it at once */
    if (port_file && write_port_file(port_file) < 0) return 1;
    for (int i = 0; i < g_nlisteners; i++)
        printf("%s\n", g_listeners[i].bound);
    fflush(stdout);

    uv_signal_init(g_up.loop, &g_sigterm);
    uv_signal_init(g_up.loop, &g_sigint);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    uv_run(g_up.loop, UV_RUN_DEFAULT);

    int rc = uv_loop_close(g_up.loop) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "ferry-upstream: handles left open at exit\n");
    for (int i = 0; i < g_nlisteners; i++)
        if (g_listeners[i].is_pipe) unlink(g_listeners[i].spec + 5);
    if (g_echo_mode)
        fprintf(stderr, "accepted: %llu\n", (unsigned long long)g_up.accepted);
    else
        fprintf(stderr, "accepted: %llu requests: %llu\n", (unsigned long long)g_up.accepted,
                (unsigned long long)g_up.requests);
    free(g_up.name_json);
    return rc;
}
