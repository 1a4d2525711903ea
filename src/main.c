/* main: the command line, start-up, signals, and the orderly stop.
 *
 * Start-up does everything that can fail before any worker runs: load and
 * validate the config, open the access log, bind every listener. A failure
 * there is exit 1 with a message that names the culprit. Then the workers
 * start, each on its own thread, and the main thread runs a small loop of
 * its own that only handles signals and waits for the workers to end.
 *
 * SIGTERM/SIGINT: every worker drains (stops accepting, lets connections
 * finish); shutdown_timeout later, or at a second signal, the rest are
 * closed. The process exits 0 once every worker has ended. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "ferry/acme.h"
#include "ferry/admin.h"
#include "ferry/config.h"
#include "ferry/explain.h"
#include "ferry/generation.h"
#include "ferry/health.h"
#include "ferry/healthcheck.h"
#include "ferry/listener.h"
#include "ferry/localca.h"
#include "ferry/log.h"
#include "ferry/memtrim.h"
#include "ferry/ports.h"
#include "ferry/tls.h"
#include "ferry/watch.h"
#include "ferry/worker.h"

struct options {
    const char *config_path;
    bool check_only;
    unsigned workers; /* 0 = from the config */
    const char *explain;
    bool trust; /* --trust: say where the local CA is and how to trust it */
    bool healthcheck; /* --healthcheck: ask the admin endpoint and exit */
};

struct app {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup, sigusr1;
    uv_async_t worker_exited;     /* a worker's thread is ending */
    uv_timer_t shutdown_timer;    /* shutdown_timeout after the first stop signal */
    struct runtime rt;
    struct generation *gen;       /* the current config (one reference held here) */
    struct admin *admin;          /* the admin endpoint, when configured */
    struct memtrim *memtrim;      /* gives memory back after a burst */
    struct watch *watch;          /* watch_config = on: the config file's watch */
    unsigned next_gen_id;
    const char *config_path;
    struct worker *workers;
    unsigned nworkers;
    atomic_uint exited;           /* workers whose loop has ended */
    bool stopping;                /* a stop signal arrived */
};

static void usage(FILE *out) {
    fprintf(out,
            "usage: ferry [-c FILE] [-t] [-w N] [--explain 'METHOD URL'] [--trust] [--healthcheck]\n"
            "             [--version] [-h]\n"
            "  -c, --config FILE   config file (default /etc/ferry/ferry.ini)\n"
            "  -t, --check         validate the config and exit\n"
            "  -w, --workers N     override [global] workers\n"
            "      --explain REQ   show which route a request would take\n"
            "      --trust         where the local CA (tls_auto = internal) is, how to trust it\n"
            "      --healthcheck   GET /healthz on the config's admin address; exit 0 on 200\n"
            "      --version       print the version\n"
            "  -h, --help          this text\n");
}

/* Returns -1 to continue, or the exit status. */
static int parse_options(int argc, char **argv, struct options *o) {
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},  {"check", no_argument, NULL, 't'},
        {"workers", required_argument, NULL, 'w'}, {"explain", required_argument, NULL, 'E'},
        {"trust", no_argument, NULL, 'T'},
        {"version", no_argument, NULL, 'V'},       {"help", no_argument, NULL, 'h'},
        {"healthcheck", no_argument, NULL, 'H'},   {NULL, 0, NULL, 0}};
    *o = (struct options){.config_path = "/etc/ferry/ferry.ini"};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:tw:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': o->config_path = optarg; break;
        case 't': o->check_only = true; break;
        case 'w': {
            char *end;
            unsigned long n = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || n < 1 || n > 1024) {
                fprintf(stderr, "ferry: -w: expected a number of workers 1..1024, got '%s'\n",
                        optarg);
                return 2;
            }
            o->workers = (unsigned)n;
            break;
        }
        case 'E': o->explain = optarg; break;
        case 'T': o->trust = true; break;
        case 'H': o->healthcheck = true; break;
        case 'V': printf("ferry %s\n", FERRY_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        case ':':
            fprintf(stderr, "ferry: option '%s' needs a value\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        default:
            fprintf(stderr, "ferry: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ferry: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Loads PATH and what its TLS keys name (certificates, CA files), printing
 * every problem; the first also goes to FIRST (LEN bytes, may be NULL),
 * which the dashboard shows for a failed reload. NULL on any error. At
 * start (and for -t) the problems are bare "FILE:LINE: message" lines, as
 * a compiler's; a reload's go through the error log, so they carry the
 * time and level of every other line there. */
static struct config *load_config(const char *path, unsigned tls_flags, struct tls_set **tls,
                                  char *first, size_t len) {
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    if (cfg && !(*tls = tls_set_load(cfg, &errs, tls_flags))) {
        config_free(cfg);
        cfg = NULL;
    }
    for (size_t i = 0; i < errs.count; i++) {
        if (first)
            log_error("%s", errs.items[i]);
        else
            fprintf(stderr, "%s\n", errs.items[i]);
    }
    if (first && errs.count > 0) snprintf(first, len, "%s", errs.items[0]);
    config_errors_free(&errs);
    return cfg;
}

/* A proxy needs two descriptors per connection; without this, the default
 * soft limit of 1024 would cap it far below max_connections. */
static void raise_fd_limit(unsigned max_connections) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)max_connections * 2;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want)
        log_warn("open file limit %llu is below what max_connections = %u needs (%llu); "
                 "connections beyond it will be refused",
                 (unsigned long long)rl.rlim_cur, max_connections, (unsigned long long)want);
}

static void app_stop(struct app *a, bool force) {
    for (unsigned i = 0; i < a->nworkers; i++) {
        if (force)
            worker_force_stop(&a->workers[i]);
        else
            worker_drain(&a->workers[i]);
    }
}

static void on_shutdown_timeout(uv_timer_t *t) {
    struct app *a = t->data;
    app_stop(a, true);
}

static void on_stop_signal(uv_signal_t *s, int signum) {
    struct app *a = s->data;
    if (a->stopping) {
        log_info("signal %d again: closing every connection now", signum);
        app_stop(a, true);
        return;
    }
    a->stopping = true;
    log_info("signal %d: graceful stop (at most %llums)", signum,
             (unsigned long long)a->gen->cfg->global.shutdown_timeout_ms);
    app_stop(a, false);
    uv_timer_start(&a->shutdown_timer, on_shutdown_timeout,
                   a->gen->cfg->global.shutdown_timeout_ms, 0);
}

/* The old listener on the same address, if any: its sockets are kept. */
static const struct config_listener *find_bind(const struct config *cfg, const char *bind) {
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (strcmp(cfg->listeners[i].bind.text, bind) == 0) return &cfg->listeners[i];
    return NULL;
}

/* Opens sockets for NEXT's listeners on addresses OLD does not listen on:
 * fds[l * nworkers + w], -1 where the workers keep theirs. NULL (logged,
 * nothing left open) when one cannot be bound. */
static int *open_new_listeners(const struct config *old, const struct config *next,
                               unsigned nworkers, char *err, size_t errlen) {
    size_t n = next->nlisteners * nworkers;
    int *fds = xmalloc((n + 1) * sizeof(int));
    for (size_t k = 0; k < n; k++) fds[k] = -1;
    for (size_t l = 0; l < next->nlisteners; l++) {
        const struct config_listener *cl = &next->listeners[l];
        if (find_bind(old, cl->bind.text)) continue;
        if (listener_open(cl, nworkers, fds + l * nworkers, err, errlen) < 0) {
            log_error("reload: %s", err);
            for (size_t k = 0; k < n; k++)
                if (fds[k] >= 0) close(fds[k]);
            free(fds);
            return NULL;
        }
    }
    return fds;
}

/* "FILE:LINE: access_log: cannot open 'PATH': reason" into OUT: the path
 * comes from the config, so the error points into the config ("FILE: ..."
 * when the default, stdout, is what failed). */
static void access_log_error(const struct config *cfg, int err, char *out, size_t len) {
    const struct config_global *g = &cfg->global;
    const char *what = g->access_log == ACCESS_LOG_FILE ? g->access_log_path
                       : g->access_log == ACCESS_LOG_STDERR ? "stderr"
                                                            : "stdout";
    char line[16] = "";
    if (g->access_log_line > 0) snprintf(line, sizeof(line), ":%d", g->access_log_line);
    snprintf(out, len, "%s%s: access_log: cannot open '%s': %s", cfg->file, line, what,
             strerror(-err));
}

static void apply_globals(const struct config *cfg) {
    const struct config_global *g = &cfg->global;
    log_set_level(g->log_level);
    int err = access_log_open(g->access_log, g->access_log_path, g->access_log_format);
    if (err < 0) {
        char msg[4200];
        access_log_error(cfg, err, msg, sizeof(msg));
        log_error("reload: %s; keeping the previous access log", msg);
    }
}

/* ferry --trust: the local CA of the config's state_dir, made now if it is
 * not there yet (the user asked in order to trust it), and how to trust
 * it. 0, or 1 when the config or the CA cannot be had. */
static int print_trust(const char *path) {
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    for (size_t i = 0; i < errs.count; i++) fprintf(stderr, "%s\n", errs.items[i]);
    config_errors_free(&errs);
    if (!cfg) return 1;
    char msg[512];
    bool created;
    struct localca *ca = localca_open(cfg->global.state_dir, &created, msg, sizeof(msg));
    if (!ca) {
        fprintf(stderr, "%s: %s\n", path, msg);
        config_free(cfg);
        return 1;
    }
    if (created) printf("(made just now)\n");
    localca_print_trust(stdout, localca_cert_path(ca));
    localca_release(ca);
    config_free(cfg);
    return 0;
}

static void app_watch(struct app *a);

/* SIGHUP, or watch_config seeing the file change: load and validate on
 * this thread; a bad file changes nothing. A good one becomes a new
 * generation that every worker switches to. */
static void app_reload(void *arg) {
    struct app *a = arg;
    if (a->stopping) return;
    char err[512] = "";
    struct tls_set *tls = NULL;
    struct config *next = load_config(a->config_path, 0, &tls, err, sizeof(err));
    if (!next) {
        atomic_fetch_add(&a->rt.reloads_error, 1);
        admin_note_reload(a->admin, false, err);
        log_error("reload: %s is invalid (errors above); still serving the previous config",
                  a->config_path);
        return;
    }
    const struct config *old = a->gen->cfg;
    int *fds = open_new_listeners(old, next, a->nworkers, err, sizeof(err));
    if (!fds) {
        atomic_fetch_add(&a->rt.reloads_error, 1);
        admin_note_reload(a->admin, false, err);
        tls_set_free(tls);
        config_free(next);
        return;
    }
    if (next->global.workers != old->global.workers)
        log_warn("reload: a new number of workers takes effect at the next restart");
    struct generation *gen = generation_new(next, tls, ++a->next_gen_id);
    health_adopt(next); /* before any worker builds a view of it */
    ports_adopt(next);
    acme_adopt(next);
    for (unsigned w = 0; w < a->nworkers; w++) {
        int *mine = xmalloc((next->nlisteners + 1) * sizeof(int));
        for (size_t l = 0; l < next->nlisteners; l++) mine[l] = fds[l * a->nworkers + w];
        worker_reload(&a->workers[w], gen, mine);
    }
    free(fds);
    for (size_t l = 0; l < old->nlisteners; l++)
        if (!find_bind(next, old->listeners[l].bind.text)) listener_unlink(&old->listeners[l]);
    apply_globals(next);
    struct generation *prev = a->gen;
    a->gen = gen;
    generation_unref(prev);
    app_watch(a);
    atomic_fetch_add(&a->rt.reloads_ok, 1);
    admin_note_reload(a->admin, true, NULL);
    log_info("reload: %s loaded (config generation %u)", a->config_path, gen->id);
}

static void on_sighup(uv_signal_t *s, int signum) {
    FERRY_UNUSED(signum);
    app_reload(s->data);
}

/* Starts or stops the config file's watch as the current config says. */
static void app_watch(struct app *a) {
    bool want = a->gen->cfg->global.watch_config;
    if (want && !a->watch) {
        a->watch = watch_start(&a->loop, a->config_path, app_reload, a);
    } else if (!want && a->watch) {
        watch_stop(a->watch);
        a->watch = NULL;
    }
}

static void on_sigusr1(uv_signal_t *s, int signum) {
    FERRY_UNUSED(s);
    FERRY_UNUSED(signum);
    int err = access_log_reopen();
    if (err < 0) log_error("SIGUSR1: reopening the access log: %s", uv_strerror(err));
}

static void close_main_handle(uv_handle_t *h, void *arg) {
    FERRY_UNUSED(arg);
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_worker_exited(uv_async_t *as) {
    struct app *a = as->data;
    if (atomic_load(&a->exited) < a->nworkers) return;
    health_stop();
    ports_stop();
    acme_stop();
    admin_stop(a->admin);
    a->admin = NULL;
    memtrim_stop(a->memtrim);
    a->memtrim = NULL;
    watch_stop(a->watch);
    a->watch = NULL;
    tls_tickets_stop();
    uv_walk(&a->loop, close_main_handle, NULL);
}

static uint64_t workers_freed_bytes(void *arg) {
    const struct app *a = arg;
    uint64_t total = 0;
    for (unsigned i = 0; i < a->nworkers; i++) total += worker_freed_bytes(&a->workers[i]);
    return total;
}

/* Runs on the worker's thread as it ends. */
static void notify_worker_exit(struct worker *w) {
    struct app *a = w->rt->data;
    atomic_fetch_add(&a->exited, 1);
    uv_async_send(&a->worker_exited);
}

static void app_signals(struct app *a) {
    struct {
        uv_signal_t *h;
        uv_signal_cb cb;
        int signum;
    } sigs[] = {{&a->sigterm, on_stop_signal, SIGTERM},
                {&a->sigint, on_stop_signal, SIGINT},
                {&a->sighup, on_sighup, SIGHUP},
                {&a->sigusr1, on_sigusr1, SIGUSR1}};
    for (size_t i = 0; i < FERRY_ARRAY_LEN(sigs); i++) {
        uv_signal_init(&a->loop, sigs[i].h);
        sigs[i].h->data = a;
        uv_signal_start(sigs[i].h, sigs[i].cb, sigs[i].signum);
    }
    uv_timer_init(&a->loop, &a->shutdown_timer);
    a->shutdown_timer.data = a;
    uv_async_init(&a->loop, &a->worker_exited, on_worker_exited);
    a->worker_exited.data = a;
}

/* Binds every listener for every worker; fds[l * nworkers + w]. */
static int *open_listeners(const struct config *cfg, unsigned nworkers) {
    int *fds = xcalloc(cfg->nlisteners * nworkers + 1, sizeof(int));
    for (size_t l = 0; l < cfg->nlisteners; l++) {
        char err[512];
        if (listener_open(&cfg->listeners[l], nworkers, fds + l * nworkers, err, sizeof(err)) < 0) {
            fprintf(stderr, "ferry: %s\n", err);
            for (size_t k = 0; k < l * nworkers; k++) close(fds[k]);
            free(fds);
            return NULL;
        }
    }
    return fds;
}

static int start_workers(struct app *a, const int *fds) {
    const struct config *cfg = a->gen->cfg;
    a->workers = xcalloc(a->nworkers, sizeof(*a->workers));
    int *mine = xcalloc(cfg->nlisteners + 1, sizeof(int));
    for (unsigned w = 0; w < a->nworkers; w++) {
        for (size_t l = 0; l < cfg->nlisteners; l++) mine[l] = fds[l * a->nworkers + w];
        if (worker_init(&a->workers[w], w, &a->rt, a->gen, mine) < 0 ||
            worker_start(&a->workers[w]) < 0) {
            free(mine);
            return -1; /* start-up failure: exit 1, the kernel closes everything */
        }
    }
    free(mine);
    return 0;
}

int main(int argc, char **argv) {
    struct options opt;
    int rc = parse_options(argc, argv, &opt);
    if (rc >= 0) return rc;
    struct app a = {.config_path = opt.config_path};
    struct tls_set *tls = NULL;
    if (opt.trust) return print_trust(opt.config_path);
    /* -t and --explain write nothing: no local CA is made for them */
    unsigned flags = opt.check_only || opt.explain ? TLS_LOAD_CHECK : 0;
    struct config *cfg = load_config(opt.config_path, flags, &tls, NULL, 0);
    if (!cfg) return 1;
    if (opt.healthcheck) {
        rc = healthcheck_run(cfg, stderr);
        tls_set_free(tls);
        config_free(cfg);
        return rc;
    }
    if (opt.explain) {
        rc = explain_run(cfg, tls, opt.explain, stdout, stderr);
        tls_set_free(tls);
        config_free(cfg);
        return rc;
    }
    const struct config_global *g = &cfg->global;
    /* -t opens the access log as a start would (nginx -t does the same): a
     * missing directory is a config error, not a surprise at start. */
    int err = opt.check_only ? access_log_check(g->access_log, g->access_log_path)
                             : access_log_open(g->access_log, g->access_log_path,
                                               g->access_log_format);
    if (err < 0) {
        char msg[4200];
        access_log_error(cfg, err, msg, sizeof(msg));
        fprintf(stderr, "%s\n", msg);
        tls_set_free(tls);
        config_free(cfg);
        return 1;
    }
    if (opt.check_only) {
        printf("%s: ok\n", opt.config_path);
        tls_set_free(tls);
        config_free(cfg);
        return 0;
    }
    log_set_level(g->log_level);
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an error code, not a death */
    raise_fd_limit(g->max_connections);
    a.nworkers = opt.workers ? opt.workers : g->workers ? g->workers : uv_available_parallelism();
    int *fds = open_listeners(cfg, a.nworkers);
    if (!fds) {
        access_log_close();
        tls_set_free(tls);
        config_free(cfg);
        return 1;
    }
    a.gen = generation_new(cfg, tls, ++a.next_gen_id);
    uv_loop_init(&a.loop);
    tls_tickets_start(&a.loop);
    health_start(&a.loop);
    health_adopt(cfg);
    ports_start(&a.loop);
    ports_adopt(cfg);
    acme_start(&a.loop);
    acme_adopt(cfg);
    a.rt.on_worker_exit = notify_worker_exit;
    a.rt.data = &a;
    app_signals(&a);
    if (start_workers(&a, fds) < 0) return 1;
    free(fds);
    a.memtrim = memtrim_start(&a.loop, workers_freed_bytes, &a); /* NULL: never trims */
    app_watch(&a);
    if (cfg->global.has_admin) {
        struct admin_source src = {a.workers, a.nworkers, &a.gen, &a.rt};
        char msg[512];
        if (!(a.admin = admin_start(&a.loop, &src, msg, sizeof(msg)))) {
            fprintf(stderr, "ferry: %s\n", msg);
            return 1; /* start-up failure: the kernel closes everything */
        }
    }
    log_info("ferry %s: %u worker%s, %zu listener%s, config %s", FERRY_VERSION, a.nworkers,
             a.nworkers == 1 ? "" : "s", cfg->nlisteners, cfg->nlisteners == 1 ? "" : "s",
             opt.config_path);
    uv_run(&a.loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < a.nworkers; i++) worker_join(&a.workers[i]);
    free(a.workers);
    uv_loop_close(&a.loop);
    health_free();
    for (size_t l = 0; l < a.gen->cfg->nlisteners; l++) listener_unlink(&a.gen->cfg->listeners[l]);
    access_log_close();
    log_info("stopped");
    generation_unref(a.gen);
    return 0;
}
