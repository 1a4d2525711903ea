/* Unit tests for the config loader: every error class with its exact
 * "FILE:LINE: message", values valid and invalid, ${VAR} expansion,
 * addresses, duplicate routes, and the spec's full example.
 *
 * Each test leaves what it loaded in `t_cfg` / `t_errs`; the teardown frees
 * them, so a failing assertion does not leak (the suite runs under ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/config.h"

static struct config *t_cfg;
static struct config_errors t_errs;
static char t_path[64];

static int teardown(void **state) {
    (void)state;
    config_free(t_cfg);
    t_cfg = NULL;
    config_errors_free(&t_errs);
    if (t_path[0]) unlink(t_path);
    t_path[0] = '\0';
    return 0;
}

/* Loads TEXT as "t.ini" into t_cfg / t_errs (freeing the previous ones). */
static struct config *load_as_is(const char *text) {
    teardown(NULL);
    t_cfg = config_load_string("t.ini", text, &t_errs);
    return t_cfg;
}

#define NO_LISTENER "t.ini: no [listener NAME] section: nothing to serve"

/* The same, but when TEXT has no listener, again with one added after its
 * last line: a config without one is an error (test_no_listener), which
 * would bury what a test about another section checks. Lines stay. */
static struct config *load(const char *text) {
    static const char listener[] = "\n[listener zz]\nbind = :9\n";
    load_as_is(text);
    bool none = false;
    for (size_t i = 0; i < t_errs.count; i++)
        none = none || strcmp(t_errs.items[i], NO_LISTENER) == 0;
    if (!none) return t_cfg;
    size_t n = strlen(text);
    char *full = malloc(n + sizeof listener);
    assert_non_null(full);
    memcpy(full, text, n);
    memcpy(full + n, listener, sizeof listener);
    load_as_is(full);
    free(full);
    return t_cfg;
}

static void dump_errors(void) {
    for (size_t i = 0; i < t_errs.count; i++)
        print_message("  error: %s\n", t_errs.items[i]);
}

/* TEXT must load without any error. */
static struct config *load_ok(const char *text) {
    load(text);
    if (t_errs.count) dump_errors();
    assert_int_equal(t_errs.count, 0);
    assert_non_null(t_cfg);
    return t_cfg;
}

/* TEXT must fail with exactly the errors WANT (NULL-terminated), in order. */
static void expect_errors_(const char *text, const char *const *want) {
    size_t n = 0;
    load(text);
    while (want[n])
        n++;
    if (t_errs.count != n) dump_errors();
    assert_null(t_cfg);
    assert_int_equal(t_errs.count, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(t_errs.items[i], want[i]);
}
#define EXPECT_ERRORS(text, ...) expect_errors_(text, (const char *const[]){__VA_ARGS__, NULL})

/* The one error of a one-key change: KEY_LINE goes on line 3 of SECTION
 * after a valid upstream (lines 1-2). */
#define UP "[upstream app]\nserver = 127.0.0.1:3000\n"

/* What a refused value with " #" in it adds to its message. */
#define HASH_HINT                                                                                  \
    "(inline '#' comments are not supported: '#' starts a comment only at the start of a "      \
    "line; use ' ; comment' after a value)"

/* ---- the spec's example ---------------------------------------------- */

static const char spec_example[] =
    "[global]\n"
    "workers = auto            ; event-loop threads; auto = one per CPU\n"
    "log_level = info          ; error | warn | info | debug\n"
    "access_log = stdout       ; off | stdout | stderr | PATH\n"
    "access_log_format = text  ; text | json\n"
    "admin = 127.0.0.1:9901    ; admin HTTP endpoint; off by default\n"
    "max_connections = 10000   ; downstream connections for the whole process\n"
    "shutdown_timeout = 30s\n"
    "\n"
    "[listener web]\n"
    "bind = 0.0.0.0:8080       ; HOST:PORT, [IPV6]:PORT, :PORT (every address, v4 and v6), or "
    "unix:/path\n"
    "backlog = 511             ; listen() queue of connections not yet accepted\n"
    "mode = http               ; http | tcp\n"
    "upstream = app            ; tcp: required; http: used when no route matches (else 404)\n"
    "header_timeout = 10s      ; http: whole request head must arrive within this, else 408 + "
    "close\n"
    "idle_timeout = 60s        ; keep-alive idle (http) / no bytes either way (tcp)\n"
    "max_header_size = 32k     ; request line + headers; over it: 431 + close\n"
    "max_body_size = 0         ; 0 = unlimited; over it: 413 + close\n"
    "proxy_protocol = off      ; on: expect a PROXY v1/v2 header from a load balancer in front\n"
    "\n"
    "[upstream app]\n"
    "server = 127.0.0.1:3000 weight=2   ; repeatable: HOST:PORT or unix:/path, weight=N, backup\n"
    "server = app2:3000                 ; names are resolved at start and re-resolved every "
    "`resolve`,\n"
    "                                   ; and at once (off the request path) after a connect "
    "failure to that server;\n"
    "                                   ; a name that does not resolve yet marks that server down "
    "(not a config error)\n"
    "balance = round_robin     ; round_robin | least_conn | ip_hash | random2\n"
    "resolve = 30s             ; re-resolve hostnames (docker service names change address on "
    "restart)\n"
    "connect_timeout = 3s      ; exceeded: next server if retries allow, else 504\n"
    "read_timeout = 60s        ; longest silence while waiting for or streaming the response: 504 "
    "(before headers) or close\n"
    "keepalive = 32            ; idle pooled connections per server per worker; 0 = a new "
    "connection per request\n"
    "keepalive_timeout = 60s   ; an idle pooled connection is closed after this\n"
    "retries = 1               ; extra attempts on another server after a connect failure, or "
    "after a reused connection\n"
    "                          ; dies before any response byte when the request is idempotent\n"
    "hold = 2s                 ; when every server is down or refuses connections (an app "
    "container restarting),\n"
    "                          ; an idempotent request keeps trying for up to this long before "
    "502/503; 0 = at once\n"
    "max_fails = 3             ; passive check: this many consecutive failures mark a server down "
    "...\n"
    "fail_timeout = 10s        ; ... for this long\n"
    "health_check = off        ; off | tcp | http:/path  (active checks; 2xx/3xx is healthy)\n"
    "health_interval = 5s\n"
    "proxy_protocol = off      ; off | v1 | v2: send a PROXY header to the server\n"
    "source = 127.0.0.2 127.0.0.3  ; optional local addresses for outbound connections, used in "
    "turn:\n"
    "                          ; each adds a full ephemeral port range (IP_BIND_ADDRESS_NO_PORT)\n"
    "\n"
    "[route api]\n"
    "host = api.example.com    ; repeatable; exact name or *.suffix; absent = any host\n"
    "path_prefix = /api/       ; or: path = /exact ; absent = /\n"
    "methods = GET POST        ; absent = any\n"
    "listener = web            ; absent = every http listener\n"
    "upstream = app\n"
    "strip_prefix = on         ; /api/users -> /users upstream\n"
    "add_request_header = X-Env: prod     ; repeatable\n"
    "remove_request_header = X-Debug      ; repeatable\n"
    "add_response_header = X-Frame-Options: DENY\n";

/* Every value of the example, and the defaults it repeats. Loading must
 * not resolve `app2`: names are resolved at run time. */
static void test_spec_example(void **state) {
    (void)state;
    struct config *c = load_ok(spec_example);
    assert_string_equal(c->file, "t.ini");
    const struct config_global *g = &c->global;
    assert_int_equal(g->workers, 0);
    assert_int_equal(g->log_level, LOG_INFO);
    assert_int_equal(g->access_log, ACCESS_LOG_STDOUT);
    assert_null(g->access_log_path);
    assert_int_equal(g->access_log_format, ACCESS_LOG_TEXT);
    assert_true(g->has_admin);
    assert_int_equal(g->admin.kind, ADDR_INET);
    assert_string_equal(g->admin.host, "127.0.0.1");
    assert_int_equal(g->admin.port, 9901);
    assert_int_equal(g->max_connections, 10000);
    assert_int_equal(g->shutdown_timeout_ms, 30000);

    assert_int_equal(c->nlisteners, 1);
    const struct config_listener *l = &c->listeners[0];
    assert_string_equal(l->name, "web");
    assert_int_equal(l->line, 10);
    assert_int_equal(l->bind.kind, ADDR_INET);
    assert_string_equal(l->bind.host, "0.0.0.0");
    assert_int_equal(l->bind.port, 8080);
    assert_string_equal(l->bind.text, "0.0.0.0:8080");
    assert_int_equal(l->backlog, 511);
    assert_int_equal(l->mode, MODE_HTTP);
    assert_ptr_equal(l->upstream, &c->upstreams[0]);
    assert_int_equal(l->header_timeout_ms, 10000);
    assert_int_equal(l->idle_timeout_ms, 60000);
    assert_int_equal(l->max_header_size, 32 * 1024);
    assert_int_equal(l->max_body_size, 0);
    assert_false(l->proxy_protocol);

    assert_int_equal(c->nupstreams, 1);
    const struct config_upstream *u = &c->upstreams[0];
    assert_string_equal(u->name, "app");
    assert_int_equal(u->line, 21);
    assert_int_equal(u->nservers, 2);
    assert_string_equal(u->servers[0].addr.host, "127.0.0.1");
    assert_int_equal(u->servers[0].addr.port, 3000);
    assert_string_equal(u->servers[0].addr.text, "127.0.0.1:3000");
    assert_int_equal(u->servers[0].weight, 2);
    assert_false(u->servers[0].backup);
    assert_int_equal(u->servers[0].line, 22);
    assert_string_equal(u->servers[1].addr.host, "app2");
    assert_int_equal(u->servers[1].addr.port, 3000);
    assert_int_equal(u->servers[1].weight, 1);
    assert_int_equal(u->servers[1].line, 23);
    assert_int_equal(u->balance, BALANCE_ROUND_ROBIN);
    assert_int_equal(u->resolve_ms, 30000);
    assert_int_equal(u->connect_timeout_ms, 3000);
    assert_int_equal(u->read_timeout_ms, 60000);
    assert_int_equal(u->keepalive, 32);
    assert_int_equal(u->keepalive_timeout_ms, 60000);
    assert_int_equal(u->retries, 1);
    assert_int_equal(u->hold_ms, 2000);
    assert_int_equal(u->max_fails, 3);
    assert_int_equal(u->fail_timeout_ms, 10000);
    assert_int_equal(u->health_check, HEALTH_OFF);
    assert_null(u->health_path);
    assert_int_equal(u->health_interval_ms, 5000);
    assert_int_equal(u->proxy_protocol, PROXY_PROTOCOL_OFF);
    assert_int_equal(u->nsources, 2);
    assert_string_equal(u->sources[0], "127.0.0.2");
    assert_string_equal(u->sources[1], "127.0.0.3");

    assert_int_equal(c->nroutes, 1);
    const struct config_route *r = &c->routes[0];
    assert_string_equal(r->name, "api");
    assert_int_equal(r->line, 44);
    assert_int_equal(r->nhosts, 1);
    assert_string_equal(r->hosts[0], "api.example.com");
    assert_string_equal(r->path, "/api/");
    assert_false(r->path_exact);
    assert_int_equal(r->nmethods, 2);
    assert_string_equal(r->methods[0], "GET");
    assert_string_equal(r->methods[1], "POST");
    assert_ptr_equal(r->listener, l);
    assert_ptr_equal(r->upstream, u);
    assert_true(r->strip_prefix);
    assert_int_equal(r->nadd_request_headers, 1);
    assert_string_equal(r->add_request_headers[0].name, "X-Env");
    assert_string_equal(r->add_request_headers[0].value, "prod");
    assert_int_equal(r->nremove_request_headers, 1);
    assert_string_equal(r->remove_request_headers[0], "X-Debug");
    assert_int_equal(r->nadd_response_headers, 1);
    assert_string_equal(r->add_response_headers[0].name, "X-Frame-Options");
    assert_string_equal(r->add_response_headers[0].value, "DENY");
    assert_ptr_equal(config_find_upstream(c, "app"), u);
    assert_ptr_equal(config_find_listener(c, "web"), l);
    assert_null(config_find_upstream(c, "web"));
    assert_null(config_find_listener(c, "app"));
}

/* What a section gets when it sets nothing but what it must. */
static void test_defaults(void **state) {
    (void)state;
    struct config *c = load_ok("[listener web]\nbind = :8080\n" UP "[route r]\nupstream = app\n");
    assert_int_equal(c->global.workers, 0);
    assert_int_equal(c->global.log_level, LOG_INFO);
    assert_int_equal(c->global.access_log, ACCESS_LOG_STDOUT);
    assert_false(c->global.has_admin);
    assert_int_equal(c->global.max_connections, 10000);
    assert_int_equal(c->global.shutdown_timeout_ms, 30000);
    const struct config_listener *l = &c->listeners[0];
    assert_string_equal(l->bind.host, "");
    assert_int_equal(l->bind.port, 8080);
    assert_null(l->upstream);
    assert_int_equal(l->backlog, 511);
    assert_int_equal(l->max_header_size, 32768);
    const struct config_upstream *u = &c->upstreams[0];
    assert_int_equal(u->keepalive, 32);
    assert_int_equal(u->nsources, 0);
    assert_null(u->sources);
    const struct config_route *r = &c->routes[0];
    assert_string_equal(r->path, "/");
    assert_false(r->path_exact);
    assert_int_equal(r->nhosts, 0);
    assert_int_equal(r->nmethods, 0);
    assert_null(r->listener);
    assert_ptr_equal(r->upstream, u);
    assert_false(r->strip_prefix);
}

/* No sections at all is a valid (if useless) config. */
/* A config that would start and serve nothing is an error naming the
 * file, whatever else it holds. */
static void test_no_listener(void **state) {
    (void)state;
    static const char *const texts[] = {
        "", "; nothing\n\n# here\n", "[global]\nworkers = 2\n", UP "[route r]\nupstream = app\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        assert_null(load_as_is(texts[i]));
        if (t_errs.count != 1) dump_errors();
        assert_int_equal(t_errs.count, 1);
        assert_string_equal(t_errs.items[0], NO_LISTENER);
    }
    /* with other errors, it comes first (it has no line) */
    assert_null(load_as_is("[listenr web]\nbind = :1\n"));
    assert_int_equal(t_errs.count, 2);
    assert_string_equal(t_errs.items[0], NO_LISTENER);
    assert_string_equal(t_errs.items[1], "t.ini:1: unknown section type 'listenr' (expected global, "
                                         "listener, upstream or route)");
    struct config *c = load_ok("; comments only, then\n[listener web]\nbind = :1\n");
    assert_int_equal(c->nlisteners, 1);
}

/* ---- values ------------------------------------------------------------ */

static void test_durations(void **state) {
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms;
    } good[] = {
        {"250ms", 250},  {"10s", 10000}, {"5m", 300000},
        {"1h", 3600000}, {"7", 7000},    {"0", 0},
        {"0ms", 0},      {"007s", 7000}, {"18446744073709551615ms", UINT64_MAX},
        {"1d", 86400000}, {"365d", 31536000000},
    };
    static const char *const bad[] = {
        "",
        "s",
        "ms",
        "-1s",
        "+1s",
        "1.5s",
        "1 s",
        " 1s",
        "1s ",
        "10S",
        "10sec",
        "1D",
        "1dd",
        "1hm",
        "0x10",
        "18446744073709551616ms",
        "18446744073709551615s",
        "5124095576030432h",
        "99999999999999999999",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t ms = 1234;
        assert_int_equal(config_parse_duration(good[i].text, &ms), 0);
        assert_true(ms == good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms = 1234;
        if (config_parse_duration(bad[i], &ms) != -1) fail_msg("accepted duration '%s'", bad[i]);
        assert_true(ms == 1234); /* nothing written */
    }
}

static void test_sizes(void **state) {
    (void)state;
    static const struct {
        const char *text;
        uint64_t bytes;
    } good[] = {
        {"512", 512},
        {"16k", 16384},
        {"16K", 16384},
        {"1m", 1048576},
        {"2M", 2097152},
        {"0", 0},
        {"18014398509481983k", 18014398509481983ull * 1024},
    };
    static const char *const bad[] = {
        "",
        "k",
        "-1",
        "1g",
        "1G",
        "1kb",
        "1 k",
        "1.5m",
        "16kk",
        "18014398509481984k",
        "18446744073709551616",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t n = 1234;
        assert_int_equal(config_parse_size(good[i].text, &n), 0);
        assert_true(n == good[i].bytes);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t n = 1234;
        if (config_parse_size(bad[i], &n) != -1) fail_msg("accepted size '%s'", bad[i]);
        assert_true(n == 1234);
    }
}

static void test_bools(void **state) {
    (void)state;
    static const char *const yes[] = {"on", "yes", "true", "ON", "True"};
    static const char *const no[] = {"off", "no", "false", "OFF", "No"};
    static const char *const bad[] = {"", "1", "0", "enabled", "on ", "y", "onn"};
    for (size_t i = 0; i < 5; i++) {
        bool v = false;
        assert_int_equal(config_parse_bool(yes[i], &v), 0);
        assert_true(v);
        assert_int_equal(config_parse_bool(no[i], &v), 0);
        assert_false(v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool v = true;
        if (config_parse_bool(bad[i], &v) != -1) fail_msg("accepted bool '%s'", bad[i]);
        assert_true(v);
    }
}

static void test_addr_valid(void **state) {
    (void)state;
    static const struct {
        const char *text;
        enum addr_kind kind;
        const char *host;
        unsigned port;
        const char *path;
    } good[] = {
        {"127.0.0.1:80", ADDR_INET, "127.0.0.1", 80, NULL},
        {"[::1]:8080", ADDR_INET, "::1", 8080, NULL},
        {"[2001:db8::1]:65535", ADDR_INET, "2001:db8::1", 65535, NULL},
        {":443", ADDR_INET, "", 443, NULL},
        {"app2:3000", ADDR_INET, "app2", 3000, NULL},
        {"my_app-1.internal:1", ADDR_INET, "my_app-1.internal", 1, NULL},
        {"127.0.0.1:0", ADDR_INET, "127.0.0.1", 0, NULL},
        {":0", ADDR_INET, "", 0, NULL},
        {"unix:/run/app.sock", ADDR_UNIX, NULL, 0, "/run/app.sock"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct config_addr a;
        if (config_parse_addr(good[i].text, &a) != 0) fail_msg("refused '%s'", good[i].text);
        assert_int_equal(a.kind, good[i].kind);
        if (good[i].host)
            assert_string_equal(a.host, good[i].host);
        else
            assert_null(a.host);
        if (good[i].path)
            assert_string_equal(a.path, good[i].path);
        else
            assert_null(a.path);
        assert_int_equal(a.port, good[i].port);
        assert_string_equal(a.text, good[i].text);
        config_addr_free(&a);
        assert_null(a.text);
    }
}

static void test_addr_invalid(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",
        "127.0.0.1",
        "app",
        "app:",
        ":",
        "app:70000",
        "app:65536",
        "app:-1",
        "app:+80",
        "app: 80",
        "app :80",
        "app:8o",
        "::1:80",
        "[::1]80",
        "[::1]",
        "[::1:80",
        "::1]:80",
        "[]:80",
        "[1.2.3.4]:80",
        "[fe80::1%eth0]:80",
        "a..b:80",
        ".a:80",
        "a.:80",
        "a b:80",
        "*.a:80",
        "127.1:80",
        "300.1.1.1:80",
        "unix:",
        "unix:run/x.sock",
        "unix",
        "UNIX:/x",
        "http://a:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct config_addr a = {.port = 7};
        if (config_parse_addr(bad[i], &a) != -1) {
            config_addr_free(&a);
            fail_msg("accepted address '%s'", bad[i]);
        }
        assert_int_equal(a.port, 7);
        assert_null(a.text);
    }
    /* sun_path holds 107 bytes and a NUL */
    char path[200] = "unix:/";
    memset(path + 6, 'x', 106);
    struct config_addr a;
    assert_int_equal(config_parse_addr(path, &a), 0);
    config_addr_free(&a);
    strcat(path, "x");
    assert_int_equal(config_parse_addr(path, &a), -1);
}

/* The section-level keys reject what the address parser alone allows. */
static void test_addr_keys(void **state) {
    (void)state;
    EXPECT_ERRORS("[listener web]\nbind = app:70000\n",
                  "t.ini:2: bind: bad address 'app:70000' (expected HOST:PORT, [IPV6]:PORT, "
                  ":PORT or unix:/path)");
    load_ok("[listener web]\nbind = 127.0.0.1:0\n");
    load_ok("[listener web]\nbind = unix:/tmp/ferry.sock\n");
    EXPECT_ERRORS("[global]\nadmin = unix:/tmp/a.sock\nadmin = 1.2.3.4:0\n",
                  "t.ini:2: admin: expected off or HOST:PORT, got 'unix:/tmp/a.sock'",
                  "t.ini:3: duplicate key 'admin' (first at line 2)");
    EXPECT_ERRORS("[global]\nadmin = 1.2.3.4:0\n",
                  "t.ini:2: admin: expected off or HOST:PORT, got '1.2.3.4:0'");
    struct config *c = load_ok("[global]\nadmin = off\n");
    assert_false(c->global.has_admin);
    c = load_ok("[global]\nadmin = [::1]:9901\n");
    assert_true(c->global.has_admin);
    assert_string_equal(c->global.admin.host, "::1");
}

static void test_numbers(void **state) {
    (void)state;
    EXPECT_ERRORS("[listener web]\nbind = :1\nbacklog = 0\nbacklog = 1\n",
                  "t.ini:3: backlog: expected a number from 1 to 65535, got '0'",
                  "t.ini:4: duplicate key 'backlog' (first at line 3)");
    EXPECT_ERRORS(UP "retries = -1\n",
                  "t.ini:3: retries: expected a number from 0 to 100, got '-1'");
    EXPECT_ERRORS(
        UP "keepalive = 18446744073709551616\n",
        "t.ini:3: keepalive: expected a number from 0 to 65535, got '18446744073709551616'");
    EXPECT_ERRORS(UP "max_fails = 3x\n",
                  "t.ini:3: max_fails: expected a number from 1 to 1000, got '3x'");
    EXPECT_ERRORS(UP "keepalive =\n",
                  "t.ini:3: keepalive: expected a number from 0 to 65535, got ''");
    EXPECT_ERRORS("[global]\nmax_connections = 0\n",
                  "t.ini:2: max_connections: expected a number from 1 to 10000000, got '0'");
    struct config *c = load_ok(UP "keepalive = 0\nretries = 0\nhold = 0\n");
    assert_int_equal(c->upstreams[0].keepalive, 0);
    assert_int_equal(c->upstreams[0].hold_ms, 0);
}

static void test_duration_keys(void **state) {
    (void)state;
    EXPECT_ERRORS(UP "connect_timeout = 0\nread_timeout = 5x\nresolve = -1s\nfail_timeout =\n",
                  "t.ini:3: connect_timeout: must be greater than 0",
                  "t.ini:4: read_timeout: bad duration '5x' (expected e.g. 250ms, 10s, 5m, 1h)",
                  "t.ini:5: resolve: bad duration '-1s' (expected e.g. 250ms, 10s, 5m, 1h)",
                  "t.ini:6: fail_timeout: bad duration '' (expected e.g. 250ms, 10s, 5m, 1h)");
    struct config *c =
        load_ok(UP "connect_timeout = 250ms\nread_timeout = 2m\nhealth_interval = 1h\n"
                   "[global]\nshutdown_timeout = 0\n");
    assert_int_equal(c->upstreams[0].connect_timeout_ms, 250);
    assert_int_equal(c->upstreams[0].read_timeout_ms, 120000);
    assert_int_equal(c->upstreams[0].health_interval_ms, 3600000);
    assert_int_equal(c->global.shutdown_timeout_ms, 0);
}

/* At most 10 years: a bigger value is surely a mistake, and one near
 * 2^64 ms would wrap when added to the clock. */
static void test_duration_cap(void **state) {
    (void)state;
    EXPECT_ERRORS("[listener web]\nbind = :1\nheader_timeout = 18446744073709551615ms\n"
                  "idle_timeout = 3651d\n" UP "read_timeout = 315360000001ms\n"
                  "[global]\nshutdown_timeout = 87601h\n",
                  "t.ini:3: header_timeout: must be at most 3650d (10 years), got "
                  "'18446744073709551615ms'",
                  "t.ini:4: idle_timeout: must be at most 3650d (10 years), got '3651d'",
                  "t.ini:7: read_timeout: must be at most 3650d (10 years), got '315360000001ms'",
                  "t.ini:9: shutdown_timeout: must be at most 3650d (10 years), got '87601h'");
    struct config *c = load_ok("[listener web]\nbind = :1\nheader_timeout = 3650d\n"
                               "idle_timeout = 315360000000ms\n[global]\nshutdown_timeout = 87600h\n");
    assert_true(c->listeners[0].header_timeout_ms == 315360000000u);
    assert_true(c->listeners[0].idle_timeout_ms == 315360000000u);
    assert_true(c->global.shutdown_timeout_ms == 315360000000u);
}

static void test_size_keys(void **state) {
    (void)state;
    EXPECT_ERRORS("[listener web]\nbind = :1\nmax_header_size = 0\nmax_body_size = 1g\n",
                  "t.ini:3: max_header_size: must be from 1 to 65536 bytes, got '0'",
                  "t.ini:4: max_body_size: bad size '1g' (expected e.g. 512, 16k, 1m)");
    struct config *c =
        load_ok("[listener web]\nbind = :1\nmax_header_size = 16K\nmax_body_size = 10m\n");
    assert_int_equal(c->listeners[0].max_header_size, 16384);
    assert_int_equal(c->listeners[0].max_body_size, 10 * 1048576);
}

static void test_bool_keys(void **state) {
    (void)state;
    EXPECT_ERRORS("[listener web]\nbind = :1\nproxy_protocol = maybe\n",
                  "t.ini:3: proxy_protocol: expected on, off, yes, no, true or false, got 'maybe'");
    struct config *c = load_ok("[listener web]\nbind = :1\nproxy_protocol = Yes\n");
    assert_true(c->listeners[0].proxy_protocol);
}

static void test_keywords(void **state) {
    (void)state;
    struct config *c = load_ok("[global]\nworkers = 4\nlog_level = DEBUG\naccess_log = off\n"
                               "access_log_format = json\n" UP "balance = least_conn\n"
                               "proxy_protocol = v2\nhealth_check = http:/healthz\n");
    assert_int_equal(c->global.workers, 4);
    assert_int_equal(c->global.log_level, LOG_DEBUG);
    assert_int_equal(c->global.access_log, ACCESS_LOG_OFF);
    assert_int_equal(c->global.access_log_format, ACCESS_LOG_JSON);
    assert_int_equal(c->upstreams[0].balance, BALANCE_LEAST_CONN);
    assert_int_equal(c->upstreams[0].proxy_protocol, PROXY_PROTOCOL_V2);
    assert_int_equal(c->upstreams[0].health_check, HEALTH_HTTP);
    assert_string_equal(c->upstreams[0].health_path, "/healthz");
    c = load_ok("[global]\nworkers = AUTO\naccess_log = /var/log/ferry/access.log\n" UP
                "health_check = tcp\nbalance = random2\n");
    assert_int_equal(c->global.workers, 0);
    assert_int_equal(c->global.access_log, ACCESS_LOG_FILE);
    assert_string_equal(c->global.access_log_path, "/var/log/ferry/access.log");
    assert_int_equal(c->upstreams[0].health_check, HEALTH_TCP);
    assert_int_equal(c->upstreams[0].balance, BALANCE_RANDOM2);
    c = load_ok("[global]\naccess_log = stderr\nworkers = 1024\n");
    assert_int_equal(c->global.access_log, ACCESS_LOG_STDERR);
    assert_int_equal(c->global.workers, 1024);
}

static void test_keyword_errors(void **state) {
    (void)state;
    EXPECT_ERRORS(
        "[global]\nworkers = 0\nlog_level = verbose\naccess_log = stdot\n"
        "access_log_format = xml\n[listener web]\nbind = :1\nmode = udp\n",
        "t.ini:2: workers: expected auto or a number from 1 to 1024, got '0'",
        "t.ini:3: log_level: expected error, warn, info or debug, got 'verbose'",
        "t.ini:4: access_log: expected off, stdout, stderr or a path containing '/', got 'stdot'",
        "t.ini:5: access_log_format: expected text or json, got 'xml'",
        "t.ini:8: mode: expected http or tcp, got 'udp'");
    EXPECT_ERRORS(
        UP "balance = leastconn\nproxy_protocol = on\nhealth_check = http:healthz\n"
           "health_check = udp\n",
        "t.ini:3: balance: expected round_robin, least_conn, ip_hash or random2, got 'leastconn'",
        "t.ini:4: proxy_protocol: expected off, v1 or v2, got 'on'",
        "t.ini:5: health_check: expected off, tcp or http:/path, got 'http:healthz'",
        "t.ini:6: duplicate key 'health_check' (first at line 5)");
    EXPECT_ERRORS("[global]\nworkers = 1025\n",
                  "t.ini:2: workers: expected auto or a number from 1 to 1024, got '1025'");
}

/* source: IP literals only, in turn, no repeats. */
static void test_source(void **state) {
    (void)state;
    struct config *c = load_ok(UP "source = 10.0.0.1   ::1\n");
    assert_int_equal(c->upstreams[0].nsources, 2);
    assert_string_equal(c->upstreams[0].sources[1], "::1");
    EXPECT_ERRORS(UP "source = 10.0.0.1 app\n", "t.ini:3: source: bad IP address 'app'");
    EXPECT_ERRORS(UP "source = 10.0.0.1 10.0.0.1\n",
                  "t.ini:3: source: IP address '10.0.0.1' listed twice");
    EXPECT_ERRORS(UP "source =\n", "t.ini:3: source: expected at least one IP address");
    EXPECT_ERRORS(UP "source = [::1]\n", "t.ini:3: source: bad IP address '[::1]'");
}

/* Whether listener 0 of t_cfg takes a PROXY header from IP. */
static bool proxy_from(const char *ip) {
    uint8_t a[16] = {0};
    if (inet_pton(AF_INET, ip, a + 12) == 1)
        a[10] = a[11] = 0xff; /* v4-mapped, as a dual-stack socket reports it */
    else
        assert_int_equal(inet_pton(AF_INET6, ip, a), 1);
    const struct config_listener *l = &t_cfg->listeners[0];
    return config_cidr_match(l->proxy_from, l->nproxy_from, a);
}

#define PP_LISTENER "[listener web]\nbind = :1\nproxy_protocol = on\n"

static void test_proxy_protocol_from(void **state) {
    (void)state;
    struct config *c = load_ok(PP_LISTENER "proxy_protocol_from = 10.0.0.0/8   192.0.2.7\n"
                                           "proxy_protocol_from = 2001:db8::/32 ::1\n");
    assert_int_equal(c->listeners[0].nproxy_from, 4);
    static const char *const yes[] = {"10.0.0.0", "10.255.255.255", "192.0.2.7", "2001:db8::",
                                      "2001:db8:ffff::1", "::1", "::ffff:10.1.2.3"};
    static const char *const no[] = {"11.0.0.0", "9.255.255.255", "192.0.2.8", "2001:db9::",
                                     "::2", "::a01:203", "127.0.0.1"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!proxy_from(yes[i])) fail_msg("%s refused", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (proxy_from(no[i])) fail_msg("%s accepted", no[i]);
    /* an IPv4 block covers IPv4 only; ::/0 covers both */
    load_ok(PP_LISTENER "proxy_protocol_from = 0.0.0.0/0\n");
    assert_true(proxy_from("203.0.113.1") && !proxy_from("::1"));
    load_ok(PP_LISTENER "proxy_protocol_from = ::/0\n");
    assert_true(proxy_from("203.0.113.1") && proxy_from("2001:db8::1"));
    load_ok(PP_LISTENER "proxy_protocol_from = 10.0.0.1/32 fe80::1/128 10.0.0.0/31\n");
    assert_true(proxy_from("10.0.0.1") && proxy_from("fe80::1") && !proxy_from("10.0.0.2"));
    /* without the key, nothing is checked */
    c = load_ok(PP_LISTENER);
    assert_int_equal(c->listeners[0].nproxy_from, 0);
}

static void test_proxy_protocol_from_errors(void **state) {
    (void)state;
    static const char *const bad[] = {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "/8", "app",
                                      "10.0.0.0/8/8", "[::1]", "::/129", "10.0.0.0/-1",
                                      "10.0.0.0/8x", "1.2.3", "::1/0x10"};
    char text[256], want[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, PP_LISTENER "proxy_protocol_from = 10.0.0.0/8 %s\n", bad[i]);
        snprintf(want, sizeof want, "t.ini:4: proxy_protocol_from: bad address or CIDR '%s' "
                 "(expected e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32)", bad[i]);
        EXPECT_ERRORS(text, want);
    }
    EXPECT_ERRORS(PP_LISTENER "proxy_protocol_from = 10.1.0.0/8\n"
                              "proxy_protocol_from = 2001:db8::1/32\n",
                  "t.ini:4: proxy_protocol_from: '10.1.0.0/8' has bits set past its prefix "
                  "(the block is 10.0.0.0/8)",
                  "t.ini:5: proxy_protocol_from: '2001:db8::1/32' has bits set past its prefix "
                  "(the block is 2001:db8::/32)");
    EXPECT_ERRORS(PP_LISTENER "proxy_protocol_from =\n",
                  "t.ini:4: proxy_protocol_from: expected at least one address or CIDR");
    EXPECT_ERRORS("[listener web]\nbind = :1\nproxy_protocol_from = 10.0.0.0/8\n"
                  "[listener b]\nbind = :2\nproxy_protocol_from = ::1\nproxy_protocol = off\n",
                  "t.ini:3: listener web: proxy_protocol_from needs proxy_protocol = on",
                  "t.ini:6: listener b: proxy_protocol_from needs proxy_protocol = on");
    EXPECT_ERRORS("[listener u]\nbind = unix:/run/u.sock\nproxy_protocol = on\n"
                  "proxy_protocol_from = 10.0.0.0/8\n",
                  "t.ini:4: listener u: proxy_protocol_from cannot apply to a unix listener "
                  "(its clients have no address)");
}

/* ---- upstream servers ----------------------------------------------------- */

static void test_server_options(void **state) {
    (void)state;
    struct config *c = load_ok("[upstream app]\nserver = a:1 weight=5 backup\nserver = b:2 backup\n"
                               "server = unix:/run/app.sock weight=1000\nserver = [::1]:3\n");
    const struct config_upstream *u = &c->upstreams[0];
    assert_int_equal(u->nservers, 4);
    assert_int_equal(u->servers[0].weight, 5);
    assert_true(u->servers[0].backup);
    assert_int_equal(u->servers[1].weight, 1);
    assert_true(u->servers[1].backup);
    assert_int_equal(u->servers[2].addr.kind, ADDR_UNIX);
    assert_string_equal(u->servers[2].addr.path, "/run/app.sock");
    assert_int_equal(u->servers[2].weight, 1000);
    assert_false(u->servers[2].backup);
    assert_string_equal(u->servers[3].addr.host, "::1");
    assert_int_equal(u->servers[3].line, 5);
}

static void test_server_errors(void **state) {
    (void)state;
    /* every server line is bad, yet no "needs at least one 'server'" on
     * top: a key with a bad value counts as present */
    EXPECT_ERRORS(
        "[upstream app]\nserver = a:1 weight=0\nserver = a:1 weight=1001\n"
        "server = a:1 weight=\nserver = a:1 fast\nserver = a:1 backup backup\n"
        "server = a:1 weight=2 weight=3\nserver = :3000\nserver = a:0\n"
        "server = a\nserver =\nserver = a:1 Backup\n",
        "t.ini:2: server: weight must be a number from 1 to 1000, got '0'",
        "t.ini:3: server: weight must be a number from 1 to 1000, got '1001'",
        "t.ini:4: server: weight must be a number from 1 to 1000, got ''",
        "t.ini:5: server: unknown option 'fast' (expected weight=N or backup)",
        "t.ini:6: server: option 'backup' given twice",
        "t.ini:7: server: option 'weight=3' given twice",
        "t.ini:8: server: ':3000' needs a host and a port from 1 to 65535",
        "t.ini:9: server: 'a:0' needs a host and a port from 1 to 65535",
        "t.ini:10: server: bad address 'a' (expected HOST:PORT, [IPV6]:PORT or unix:/path)",
        "t.ini:11: server: bad address '' (expected HOST:PORT, [IPV6]:PORT or unix:/path)",
        "t.ini:12: server: unknown option 'Backup' (expected weight=N or backup)");
}

/* ---- sections and keys: each error class, with its line ------------------- */

static void test_section_header_errors(void **state) {
    (void)state;
    EXPECT_ERRORS(
        "[global name]\nworkers = x\n[listener]\n[upstream a b]\n[route a/b]\n[cache c]\n"
        "[listener web\n[]\n[route r] junk\n[ route ok ] ; fine\nupstream = app\n" UP,
        "t.ini:1: [global] takes no name", "t.ini:3: [listener] needs a name: [listener NAME]",
        "t.ini:4: [upstream] takes one name, got 'a b'",
        "t.ini:5: bad route name 'a/b' (letters, digits, '_', '.' and '-' only)",
        "t.ini:6: unknown section type 'cache' (expected global, listener, upstream or route)",
        "t.ini:7: missing ']' in section header", "t.ini:8: empty section header",
        "t.ini:9: unexpected text after ']'");
    /* keys of a refused section are ignored: its header error says it all */
}

static void test_section_types_case(void **state) {
    (void)state;
    EXPECT_ERRORS(
        "[Listener web]\nbind = :1\n",
        "t.ini:1: unknown section type 'Listener' (expected global, listener, upstream or route)");
}

static void test_duplicate_names(void **state) {
    (void)state;
    EXPECT_ERRORS(
        "[global]\n[listener web]\nbind = :1\n" UP "[global]\nworkers = 2\n"
        "[listener web]\nbind = :2\n[upstream app]\nserver = b:1\n[route r]\nupstream = app\n"
        "[route r]\nupstream = app\npath = /x\n",
        "t.ini:6: duplicate [global] section (first at line 1)",
        "t.ini:8: duplicate listener 'web' (first at line 2)",
        "t.ini:10: duplicate upstream 'app' (first at line 4)",
        "t.ini:14: duplicate route 'r' (first at line 12)");
    /* one name may be used once per section type */
    load_ok("[listener app]\nbind = :1\nupstream = app\n" UP "[route app]\nupstream = app\n");
}

static void test_unknown_and_duplicate_keys(void **state) {
    (void)state;
    EXPECT_ERRORS(
        "workers = 2\n[global]\nworker = 2\n[listener web]\nbind = :1\nBind = :2\n"
        "bind = :3\n" UP "weight = 2\n[route r]\nupstream = app\nhost = a.com\nhost = b.com\n"
        "path = /a\npath = /b\nmethods = GET\nmethods = PUT\n",
        "t.ini:1: 'workers' outside of any section", "t.ini:3: unknown key 'worker' in [global]",
        "t.ini:6: unknown key 'Bind' in [listener web]",
        "t.ini:7: duplicate key 'bind' (first at line 5)",
        "t.ini:10: unknown key 'weight' in [upstream app]",
        "t.ini:16: duplicate key 'path' (first at line 15)",
        "t.ini:18: duplicate key 'methods' (first at line 17)");
}

/* The repeatable keys: host, add_request_header, remove_request_header,
 * add_response_header, server. */
static void test_repeatable_keys(void **state) {
    (void)state;
    struct config *c =
        load_ok(UP "server = b:2\n[route r]\nupstream = app\nhost = a.com\nhost = B.com\n"
                   "add_request_header = A: 1\nadd_request_header = B: 2\n"
                   "remove_request_header = X-A\nremove_request_header = X-B\n"
                   "add_response_header = C: 3\nadd_response_header = D:\n");
    assert_int_equal(c->upstreams[0].nservers, 2);
    const struct config_route *r = &c->routes[0];
    assert_int_equal(r->nhosts, 2);
    assert_string_equal(r->hosts[1], "b.com");
    assert_int_equal(r->nadd_request_headers, 2);
    assert_string_equal(r->add_request_headers[1].name, "B");
    assert_string_equal(r->add_request_headers[1].value, "2");
    assert_int_equal(r->nremove_request_headers, 2);
    assert_int_equal(r->nadd_response_headers, 2);
    assert_string_equal(r->add_response_headers[1].value, "");
}

static void test_syntax_errors(void **state) {
    (void)state;
    EXPECT_ERRORS(
        UP "just words\nkeepalive: 3\n= 3\n ; comment\n# comment\nretries = 2 ; inline\n"
           "hold = 1s # not a comment\n",
        "t.ini:3: syntax error: expected 'key = value', '[section]' or a comment",
        "t.ini:4: syntax error: expected 'key = value', '[section]' or a comment",
        "t.ini:5: syntax error: expected 'key = value', '[section]' or a comment",
        "t.ini:9: hold: bad duration '1s # not a comment' (expected e.g. 250ms, 10s, 5m, 1h) "
        HASH_HINT);
    EXPECT_ERRORS(UP "keepalive ; x = 3\n",
                  "t.ini:3: syntax error: expected 'key = value', '[section]' or a comment");
}

/* Required keys are reported at the section's header line, also for
 * sections that end the file or are empty. */
static void test_missing_required(void **state) {
    (void)state;
    EXPECT_ERRORS("[listener web]\nbacklog = 5\n[listener t]\nbind = :1\nmode = tcp\n[route r]\n"
                  "[upstream app]\n\n[upstream empty]\n",
                  "t.ini:1: listener web: missing 'bind'",
                  "t.ini:3: listener t: mode tcp needs 'upstream' (or routes with sni and "
                  "'listener = t')",
                  "t.ini:6: route r: missing 'upstream'",
                  "t.ini:7: upstream app: needs at least one 'server'",
                  "t.ini:9: upstream empty: needs at least one 'server'");
    /* a bad value counts as present: one error, not two */
    EXPECT_ERRORS("[listener web]\nbind = nowhere\n",
                  "t.ini:2: bind: bad address 'nowhere' (expected HOST:PORT, [IPV6]:PORT, :PORT or "
                  "unix:/path)");
}

static void test_tcp_listener(void **state) {
    (void)state;
    struct config *c = load_ok(UP "[listener db]\nbind = :5432\nmode = tcp\nupstream = app\n"
                                  "idle_timeout = 5m\n");
    assert_int_equal(c->listeners[0].mode, MODE_TCP);
    assert_ptr_equal(c->listeners[0].upstream, &c->upstreams[0]);
    assert_int_equal(c->listeners[0].idle_timeout_ms, 300000);
    EXPECT_ERRORS(UP
                  "[listener db]\nheader_timeout = 1s\nbind = :5432\nmode = tcp\nupstream = app\n"
                  "max_header_size = 1k\nmax_body_size = 1k\n",
                  "t.ini:4: listener db: 'header_timeout' applies to mode http, or to a tcp "
                  "listener with sni routes (the wait for the ClientHello)",
                  "t.ini:8: listener db: 'max_header_size' applies to mode http only",
                  "t.ini:9: listener db: 'max_body_size' applies to mode http only");
}

/* sni routes: on a tcp listener only, which they must name; nothing http
 * on them; a tcp listener with them needs no `upstream` and may set
 * header_timeout. */
#define TCP_SNI "[listener t]\nbind = :443\nmode = tcp\n"
static void test_sni_routes(void **state) {
    (void)state;
    struct config *c = load_ok(UP TCP_SNI "header_timeout = 2s\n"
                                  "[route a]\nsni = API.example.com\nsni = *.Example.com\n"
                                  "listener = t\nupstream = app\n"
                                  "[route b]\nsni = *.b.example.com\nlistener = t\nupstream = app\n");
    assert_null(c->listeners[0].upstream);
    assert_int_equal(c->listeners[0].header_timeout_ms, 2000);
    assert_int_equal(c->routes[0].nsnis, 2);
    assert_string_equal(c->routes[0].snis[0], "api.example.com");
    assert_string_equal(c->routes[0].snis[1], "*.example.com");
    assert_ptr_equal(c->routes[0].listener, &c->listeners[0]);
    assert_int_equal(c->routes[0].nhosts, 0);
    /* the same sni on two routes of one listener, or twice in one route */
    EXPECT_ERRORS(UP TCP_SNI "upstream = app\n"
                  "[route a]\nsni = x.example.com\nlistener = t\nupstream = app\n"
                  "[route b]\nlistener = t\nsni = X.example.com\nupstream = app\n"
                  "[route c]\nlistener = t\nsni = *.example.com\nsni = *.example.com\n"
                  "upstream = app\n",
                  "t.ini:11: route b: sni 'x.example.com' on listener t is already routed by "
                  "route a (line 7)",
                  "t.ini:18: sni: '*.example.com' listed twice");
    /* where sni may not go, and what a tcp route may not have */
    EXPECT_ERRORS(UP TCP_SNI "upstream = app\n[listener w]\nbind = :80\n"
                  "[route a]\nsni = a.example.com\nupstream = app\n"
                  "[route b]\nsni = b.example.com\nlistener = w\nupstream = app\n"
                  "[route c]\nlistener = t\nupstream = app\n"
                  "[route d]\nlistener = t\nsni = d.example.com\nupstream = app\n"
                  "path_prefix = /d\nhost = d.example.com\n",
                  "t.ini:10: route a: sni needs 'listener = NAME' naming a tcp listener",
                  "t.ini:13: route b: sni applies to tcp listeners; listener 'w' is http (use "
                  "host)",
                  "t.ini:17: route c: listener 't' is a tcp listener; a route on it needs sni",
                  "t.ini:23: route d: 'path_prefix' does not apply to a route of tcp listener "
                  "'t' (it routes by sni only)");
    /* a listener that terminates TLS cannot also pass it through by sni */
    EXPECT_ERRORS(UP TCP_SNI "upstream = app\ntls_cert = /x.pem\n"
                  "[route a]\nlistener = t\nsni = a.example.com\nupstream = app\n",
                  "t.ini:10: route a: listener 't' terminates TLS (tls_cert); sni routes pass "
                  "TLS through untouched, on a listener without tls_cert");
    /* names a ClientHello can carry */
    EXPECT_ERRORS(UP TCP_SNI "upstream = app\n[route a]\nlistener = t\nupstream = app\n"
                  "sni = a_b.example.com\nsni = 10.0.0.1\nsni = [::1]\nsni = a.com.\nsni = *\n",
                  "t.ini:10: sni: expected a DNS host name or *.suffix (letters, digits, '-' and "
                  "'.'; no IP address), got 'a_b.example.com'",
                  "t.ini:11: sni: expected a DNS host name or *.suffix (letters, digits, '-' and "
                  "'.'; no IP address), got '10.0.0.1'",
                  "t.ini:12: sni: expected a DNS host name or *.suffix (letters, digits, '-' and "
                  "'.'; no IP address), got '[::1]'",
                  "t.ini:13: sni: expected a DNS host name or *.suffix (letters, digits, '-' and "
                  "'.'; no IP address), got 'a.com.'",
                  "t.ini:14: sni: expected a DNS host name or *.suffix (letters, digits, '-' and "
                  "'.'; no IP address), got '*'");
    /* a tcp listener with neither upstream nor sni routes has nowhere to go */
    EXPECT_ERRORS(UP TCP_SNI "header_timeout = 1s\n",
                  "t.ini:3: listener t: mode tcp needs 'upstream' (or routes with sni and "
                  "'listener = t')",
                  "t.ini:6: listener t: 'header_timeout' applies to mode http, or to a tcp "
                  "listener with sni routes (the wait for the ClientHello)");
}

static void test_references(void **state) {
    (void)state;
    EXPECT_ERRORS(
        "[listener web]\nbind = :1\nupstream = ap\n[listener t]\nbind = :2\nmode = tcp\n"
        "upstream = app\n[route r]\nupstream = nope\nlistener = webb\n[route s]\n"
        "upstream = app\nlistener = t\npath = /s\n" UP,
        "t.ini:3: undefined upstream 'ap'", "t.ini:9: undefined upstream 'nope'",
        "t.ini:10: undefined listener 'webb'",
        "t.ini:13: route s: listener 't' is a tcp listener; a route on it needs sni");
}

/* References work whatever the order of the sections. */
static void test_forward_references(void **state) {
    (void)state;
    struct config *c =
        load_ok("[route r]\nlistener = web\nupstream = b\n[listener web]\nbind = :1\n"
                "upstream = a\n[upstream a]\nserver = a:1\n[upstream b]\nserver = b:1\n");
    assert_ptr_equal(c->routes[0].listener, &c->listeners[0]);
    assert_ptr_equal(c->routes[0].upstream, config_find_upstream(c, "b"));
    assert_ptr_equal(c->listeners[0].upstream, config_find_upstream(c, "a"));
    assert_ptr_equal(config_find_upstream(c, "b"), &c->upstreams[1]);
}

/* ---- routes ---------------------------------------------------------------- */

static void test_route_paths(void **state) {
    (void)state;
    struct config *c =
        load_ok(UP "[route a]\nupstream = app\npath = /exact\n[route b]\nupstream = app\n"
                   "path_prefix = /api\nstrip_prefix = yes\n");
    assert_string_equal(c->routes[0].path, "/exact");
    assert_true(c->routes[0].path_exact);
    assert_string_equal(c->routes[1].path, "/api");
    assert_false(c->routes[1].path_exact);
    assert_true(c->routes[1].strip_prefix);
    EXPECT_ERRORS(
        UP "[route a]\nupstream = app\npath = /x\npath_prefix = /y\n[route b]\n"
           "upstream = app\npath_prefix = api\npath = /a b\npath = /q?x\n"
           "[route c]\nupstream = app\nstrip_prefix = on\npath = /c\n[route d]\n"
           "upstream = app\nstrip_prefix = on\n[route e]\nupstream = app\npath = /e\n"
           "strip_prefix = off\n",
        "t.ini:6: path_prefix: path and path_prefix are mutually exclusive (path at line 5)",
        "t.ini:9: path_prefix: expected a path starting with '/' (no spaces, '?' or '#'), got "
        "'api'",
        "t.ini:10: path: path and path_prefix are mutually exclusive (path_prefix at line 9)",
        "t.ini:11: duplicate key 'path' (first at line 10)",
        "t.ini:14: route c: strip_prefix needs path_prefix",
        "t.ini:18: route d: strip_prefix needs path_prefix");
}

/* rewrite_redirects follows strip_prefix unless set; read_timeout and
 * idle_timeout on a route override; 0 means "not set" (the upstream's and
 * the listener's apply). */
static void test_route_prefix_keys(void **state) {
    (void)state;
    struct config *c = load_ok(
        UP "[route a]\nupstream = app\npath_prefix = /a/\nstrip_prefix = on\n"
           "[route b]\nupstream = app\npath_prefix = /b/\nstrip_prefix = on\n"
           "rewrite_redirects = off\nread_timeout = 5m\nidle_timeout = 1h\n"
           "[route c]\nupstream = app\npath_prefix = /c/\nrewrite_redirects = on\n"
           "[route d]\nupstream = app\npath_prefix = /d/\n");
    assert_true(c->routes[0].rewrite_redirects);
    assert_false(c->routes[1].rewrite_redirects);
    assert_true(c->routes[2].rewrite_redirects);
    assert_false(c->routes[3].rewrite_redirects);
    assert_int_equal(c->routes[0].read_timeout_ms, 0);
    assert_int_equal(c->routes[0].idle_timeout_ms, 0);
    assert_int_equal(c->routes[1].read_timeout_ms, 300000);
    assert_int_equal(c->routes[1].idle_timeout_ms, 3600000);
    EXPECT_ERRORS(UP "[route a]\nupstream = app\nread_timeout = 0\nidle_timeout = soon\n"
                     "rewrite_redirects = maybe\n",
                  "t.ini:5: read_timeout: must be greater than 0",
                  "t.ini:6: idle_timeout: bad duration 'soon' (expected e.g. 250ms, 10s, 5m, 1h)",
                  "t.ini:7: rewrite_redirects: expected on, off, yes, no, true or false, got "
                  "'maybe'");
}

/* '#' starts a comment only at the start of a line: a refused value with
 * " #" in it says so, on its own line. */
static void test_hash_comment_hint(void **state) {
    (void)state;
    load_ok("# a comment\n" UP "  # indented too\n"
            "[route a]\nupstream = app\nadd_response_header = X-Color: #fff\n");
    assert_string_equal(t_cfg->routes[0].add_response_headers[0].value, "#fff");
    EXPECT_ERRORS("[listener web]\nbind = 127.0.0.1:8086 # my port\n",
                  "t.ini:2: bind: bad address '127.0.0.1:8086 # my port' (expected HOST:PORT, "
                  "[IPV6]:PORT, :PORT or unix:/path) " HASH_HINT);
    load_ok("[listener web]\nbind = 127.0.0.1:8086 ; my port\n");
}

static void test_route_hosts(void **state) {
    (void)state;
    struct config *c =
        load_ok(UP "[route r]\nupstream = app\nhost = API.Example.COM\n"
                   "host = *.Example.com\nhost = 10.0.0.1\nhost = [::1]\nhost = my_svc\n");
    const struct config_route *r = &c->routes[0];
    assert_int_equal(r->nhosts, 5);
    assert_string_equal(r->hosts[0], "api.example.com");
    assert_string_equal(r->hosts[1], "*.example.com");
    assert_string_equal(r->hosts[2], "10.0.0.1");
    assert_string_equal(r->hosts[3], "[::1]");
    EXPECT_ERRORS(
        UP "[route r]\nupstream = app\nhost = *\nhost = *example.com\nhost = a.*.com\n"
           "host = a.com:80\nhost = a..com\nhost = [zz]\nhost =\nhost = a.com\nhost = A.com\n",
        "t.ini:5: host: expected a host name, *.suffix or [IPv6], got '*'",
        "t.ini:6: host: expected a host name, *.suffix or [IPv6], got '*example.com'",
        "t.ini:7: host: expected a host name, *.suffix or [IPv6], got 'a.*.com'",
        "t.ini:8: host: expected a host name, *.suffix or [IPv6], got 'a.com:80'",
        "t.ini:9: host: expected a host name, *.suffix or [IPv6], got 'a..com'",
        "t.ini:10: host: expected a host name, *.suffix or [IPv6], got '[zz]'",
        "t.ini:11: host: expected a host name, *.suffix or [IPv6], got ''",
        "t.ini:13: host: 'a.com' listed twice");
}

/* Methods are case-sensitive tokens (RFC 9110), stored as written. */
static void test_route_methods(void **state) {
    (void)state;
    struct config *c = load_ok(UP "[route r]\nupstream = app\nmethods = GET  POST\tPURGE get\n");
    const struct config_route *r = &c->routes[0];
    assert_int_equal(r->nmethods, 4);
    assert_string_equal(r->methods[2], "PURGE");
    assert_string_equal(r->methods[3], "get");
    EXPECT_ERRORS(UP "[route a]\nupstream = app\nmethods = GET G@T\n[route b]\nupstream = app\n"
                     "methods = GET POST GET\n[route c]\nupstream = app\nmethods =\n",
                  "t.ini:5: methods: bad method 'G@T'",
                  "t.ini:8: methods: method 'GET' listed twice",
                  "t.ini:11: methods: expected at least one method");
}

static void test_route_headers(void **state) {
    (void)state;
    struct config *c = load_ok(UP "[route r]\nupstream = app\nadd_request_header = X-A:   a b  \n"
                                  "add_response_header = X-B:c:d\n");
    const struct config_route *r = &c->routes[0];
    assert_string_equal(r->add_request_headers[0].name, "X-A");
    assert_string_equal(r->add_request_headers[0].value, "a b");
    assert_string_equal(r->add_response_headers[0].value, "c:d");
    EXPECT_ERRORS(
        UP "[route r]\nupstream = app\nadd_request_header = X-A\n"
           "add_request_header = X A: 1\nadd_request_header = : 1\n"
           "add_response_header = Content-Length: 5\nremove_request_header = host\n"
           "remove_request_header = X-A: 1\nadd_request_header = Transfer-Encoding: chunked\n",
        "t.ini:5: add_request_header: expected 'Name: value', got 'X-A'",
        "t.ini:6: add_request_header: bad header name 'X A'",
        "t.ini:7: add_request_header: bad header name ''",
        "t.ini:8: add_response_header: header 'Content-Length' is managed by ferry and cannot be "
        "changed",
        "t.ini:9: remove_request_header: header 'host' is managed by ferry and cannot be changed",
        "t.ini:10: remove_request_header: bad header name 'X-A: 1'",
        "t.ini:11: add_request_header: header 'Transfer-Encoding' is managed by ferry and cannot "
        "be changed");
}

/* The forwarding headers ferry writes on every request cannot be added (a
 * second copy), only removed (which drops the client's). */
static void test_route_forwarding_headers(void **state) {
    (void)state;
    EXPECT_ERRORS(UP "[route r]\nupstream = app\nadd_request_header = X-Forwarded-For: 1.2.3.4\n"
                     "add_request_header = x-request-id: fixed\n"
                     "add_request_header = X-Forwarded-Proto: https\n"
                     "add_request_header = X-Forwarded-Host: h\n"
                     "add_request_header = X-Forwarded-Prefix: /p\n",
                  "t.ini:5: add_request_header: header 'X-Forwarded-For' is set by ferry on every "
                  "request and cannot be added",
                  "t.ini:6: add_request_header: header 'x-request-id' is set by ferry on every "
                  "request and cannot be added",
                  "t.ini:7: add_request_header: header 'X-Forwarded-Proto' is set by ferry on every "
                  "request and cannot be added",
                  "t.ini:8: add_request_header: header 'X-Forwarded-Host' is set by ferry on every "
                  "request and cannot be added",
                  "t.ini:9: add_request_header: header 'X-Forwarded-Prefix' is set by ferry on "
                  "every request and cannot be added");
    struct config *c = load_ok(UP "[route r]\nupstream = app\nremove_request_header = X-Forwarded-For\n"
                                  "remove_request_header = X-Request-Id\n");
    assert_int_equal(c->routes[0].nremove_request_headers, 2);
}

/* Two routes that match the same requests: the later one is reported,
 * naming the first. Host order and case, and method order, do not matter. */
static void test_duplicate_routes(void **state) {
    (void)state;
    EXPECT_ERRORS(
        UP "[route a]\nupstream = app\nhost = a.com\nhost = B.com\nmethods = GET POST\n"
           "path_prefix = /api\n[route b]\nupstream = app\npath_prefix = /api\nhost = b.com\n"
           "host = A.COM\nmethods = POST GET\n[route c]\nupstream = app\n[route d]\n"
           "upstream = app\npath_prefix = /\n[route e]\nupstream = app\n",
        "t.ini:9: route b matches exactly the same requests as route a (line 3)",
        "t.ini:17: route d matches exactly the same requests as route c (line 15)",
        "t.ini:20: route e matches exactly the same requests as route c (line 15)");
}

/* Routes that differ in any one part of the match are fine. */
static void test_distinct_routes(void **state) {
    (void)state;
    struct config *c = load_ok("[listener web]\nbind = :1\n[listener alt]\nbind = :2\n" UP
                               "[route a]\nupstream = app\n"
                               "[route b]\nupstream = app\nlistener = web\n"
                               "[route c]\nupstream = app\nlistener = alt\n"
                               "[route d]\nupstream = app\npath = /\n"
                               "[route e]\nupstream = app\nmethods = GET\n"
                               "[route f]\nupstream = app\nmethods = get\n"
                               "[route g]\nupstream = app\nhost = a.com\n"
                               "[route h]\nupstream = app\nhost = a.com\nhost = b.com\n"
                               "[route i]\nupstream = app\nhost = *.a.com\n"
                               "[route j]\nupstream = app\npath_prefix = /x\n"
                               "[route k]\nupstream = app\npath_prefix = /x/\n"
                               "[route l]\nupstream = app\npath = /x\n");
    assert_int_equal(c->nroutes, 12);
}

/* ---- ${VAR} ---------------------------------------------------------------- */

static void test_env(void **state) {
    (void)state;
    setenv("FERRY_T_PORT", "8081", 1);
    setenv("FERRY_T_HOST", "10.1.2.3", 1);
    setenv("FERRY_T_EMPTY", "", 1);
    unsetenv("FERRY_T_UNSET");
    struct config *c = load_ok(
        "[listener web]\nbind = ${FERRY_T_HOST}:${FERRY_T_PORT}\n"
        "[upstream app]\nserver = ${FERRY_T_UNSET:-app}:${FERRY_T_EMPTY:-3000}\n"
        "server = ${FERRY_T_HOST:-x}:1${FERRY_T_EMPTY}\n"
        "[route r]\nupstream = app\nadd_request_header = X-Cost: $5 and $$ ${FERRY_T_UNSET:-}$\n");
    assert_string_equal(c->listeners[0].bind.host, "10.1.2.3");
    assert_int_equal(c->listeners[0].bind.port, 8081);
    assert_string_equal(c->listeners[0].bind.text, "10.1.2.3:8081");
    assert_string_equal(c->upstreams[0].servers[0].addr.text, "app:3000");
    assert_string_equal(c->upstreams[0].servers[1].addr.text, "10.1.2.3:1");
    assert_string_equal(c->routes[0].add_request_headers[0].value, "$5 and $$ $");
}

static void test_env_errors(void **state) {
    (void)state;
    unsetenv("FERRY_T_UNSET");
    setenv("FERRY_T_EMPTY", "", 1);
    setenv("FERRY_T_CRLF", "a\r\nInjected: 1", 1);
    EXPECT_ERRORS(
        UP "[listener web]\nbind = ${FERRY_T_UNSET}\n[listener b]\nbind = ${FERRY_T_UNSET:1}\n"
           "[listener c]\nbind = :1${\n[listener d]\nbind = ${1X}:1\n[listener e]\n"
           "bind = ${}:1\n[listener f]\nbind = ${FERRY_T_EMPTY}\n[route r]\nupstream = app\n"
           "add_request_header = X: ${FERRY_T_CRLF}\n",
        "t.ini:4: bind: environment variable 'FERRY_T_UNSET' is not set",
        "t.ini:6: bind: bad variable reference '${FERRY_T_UNSET:1}'",
        "t.ini:8: bind: unterminated '${' in ':1${'",
        "t.ini:10: bind: bad variable reference '${1X}'",
        "t.ini:12: bind: bad variable reference '${}'",
        "t.ini:14: bind: bad address '' (expected HOST:PORT, [IPV6]:PORT, :PORT or unix:/path)",
        "t.ini:17: add_request_header: control character in the value of 'X'");
}

/* ---- lines ------------------------------------------------------------------- */

/* Indentation means nothing: an indented key is a key, not a continuation
 * of the value above it, and an indented header is a header. */
static void test_indentation(void **state) {
    (void)state;
    struct config *c = load_ok("  [upstream app]\n\tserver = a:1\n    server = b:2\n"
                               "      keepalive = 7\n [route r]\n   upstream = app\n");
    assert_int_equal(c->upstreams[0].nservers, 2);
    assert_int_equal(c->upstreams[0].keepalive, 7);
    EXPECT_ERRORS(UP "keepalive = 1\n    retries = x\n",
                  "t.ini:4: retries: expected a number from 0 to 100, got 'x'");
}

static void test_crlf_and_bom(void **state) {
    (void)state;
    struct config *c = load_ok("\xEF\xBB\xBF[upstream app]\r\nserver = a:1\r\nkeepalive = 9 \r\n");
    assert_int_equal(c->upstreams[0].keepalive, 9);
    EXPECT_ERRORS("\xEF\xBB\xBF[upstream app]\r\nserver = a:1\r\n\r\nkeepalive = x\r\n",
                  "t.ini:4: keepalive: expected a number from 0 to 65535, got 'x'");
    /* no final newline */
    c = load_ok("[upstream app]\nserver = a:1");
    assert_int_equal(c->upstreams[0].nservers, 1);
}

/* A line longer than inih's buffer is one error and does not move the
 * line numbers of what follows. Comments may be as long as they like. */
static void test_long_line(void **state) {
    (void)state;
    char text[2048];
    char value[400];
    memset(value, 'x', 300);
    value[300] = '\0';
    snprintf(text, sizeof text, UP "add = %s\n; %s\nretries = -1\n", value, value);
    EXPECT_ERRORS(text, "t.ini:3: line too long (more than 198 characters)",
                  "t.ini:5: retries: expected a number from 0 to 100, got '-1'");
    /* the limit: 198 characters of `key = value` after indentation */
    memset(value, '0', 198 - 7); /* "hold = " is 7 */
    value[198 - 7] = '\0';
    snprintf(text, sizeof text, UP "    hold = %s\n", value);
    load_ok(text);
    snprintf(text, sizeof text, UP "    hold = %s0\n", value);
    EXPECT_ERRORS(text, "t.ini:3: line too long (more than 198 characters)");
}

/* Everything wrong in one run, sorted by line. */
static void test_many_errors(void **state) {
    (void)state;
    EXPECT_ERRORS(
        "[global]\nworkers = many\nlog_level = info\nlog_level = debug\n"
        "[listener web]\nbind = :80\nupstream = missing\nbacklog = 1e3\nfoo = bar\n"
        "[upstream app]\nserver = a:1 weight=x\nconnect_timeout = 3 s\n"
        "[route r]\nupstream = app\nhost = A.com\n[route r2]\nhost = a.com\nupstream = app\n",
        "t.ini:2: workers: expected auto or a number from 1 to 1024, got 'many'",
        "t.ini:4: duplicate key 'log_level' (first at line 3)",
        "t.ini:7: undefined upstream 'missing'",
        "t.ini:8: backlog: expected a number from 1 to 65535, got '1e3'",
        "t.ini:9: unknown key 'foo' in [listener web]",
        "t.ini:11: server: weight must be a number from 1 to 1000, got 'x'",
        "t.ini:12: connect_timeout: bad duration '3 s' (expected e.g. 250ms, 10s, 5m, 1h)",
        "t.ini:16: route r2 matches exactly the same requests as route r (line 13)");
}

/* A route with a refused key is not compared: its match is not what the
 * file says, and its own error is the one to fix. */
static void test_bad_route_not_compared(void **state) {
    (void)state;
    EXPECT_ERRORS(UP "[route a]\nupstream = app\n[route b]\nupstream = app\nhots = a.com\n",
                  "t.ini:7: unknown key 'hots' in [route b]");
}

/* ---- files ------------------------------------------------------------------ */

static void write_file(const char *data, size_t len) {
    snprintf(t_path, sizeof t_path, "/tmp/ferry-test-config-XXXXXX");
    int fd = mkstemp(t_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_load_file(void **state) {
    (void)state;
    write_file(spec_example, strlen(spec_example));
    t_cfg = config_load(t_path, &t_errs);
    assert_int_equal(t_errs.count, 0);
    assert_non_null(t_cfg);
    assert_string_equal(t_cfg->file, t_path);
    assert_int_equal(t_cfg->routes[0].line, 44);
}

static void test_load_file_errors(void **state) {
    (void)state;
    static const char text[] = UP "keepalive = \0 x\nretries = x\n[listener l]\nbind = :1\n";
    write_file(text, sizeof text - 1);
    t_cfg = config_load(t_path, &t_errs);
    assert_null(t_cfg);
    assert_int_equal(t_errs.count, 2);
    char want[128];
    snprintf(want, sizeof want, "%s:3: line contains a NUL byte", t_path);
    assert_string_equal(t_errs.items[0], want);
    snprintf(want, sizeof want, "%s:4: retries: expected a number from 0 to 100, got 'x'", t_path);
    assert_string_equal(t_errs.items[1], want);
}

static void test_missing_file(void **state) {
    (void)state;
    t_cfg = config_load("/nonexistent/ferry.ini", &t_errs);
    assert_null(t_cfg);
    assert_int_equal(t_errs.count, 1);
    assert_string_equal(t_errs.items[0], "/nonexistent/ferry.ini: No such file or directory");
    config_errors_free(&t_errs);
    t_cfg = config_load("/", &t_errs);
    assert_null(t_cfg);
    assert_int_equal(t_errs.count, 1);
    assert_string_equal(t_errs.items[0], "/: Is a directory");
}

/* Errors are appended to what ERRS holds already. */
static void test_errors_append(void **state) {
    (void)state;
    assert_null(config_load_string("a.ini", "[x]\n[listener l]\nbind = :1\n", &t_errs));
    assert_null(config_load_string("b.ini", "[y]\n[listener l]\nbind = :1\n", &t_errs));
    assert_int_equal(t_errs.count, 2);
    assert_true(strncmp(t_errs.items[0], "a.ini:1: ", 9) == 0);
    assert_true(strncmp(t_errs.items[1], "b.ini:1: ", 9) == 0);
}

static void test_free_null(void **state) {
    (void)state;
    config_free(NULL);
    config_errors_free(NULL);
    config_addr_free(NULL);
    assert_null(config_find_upstream(NULL, "x"));
    assert_null(config_find_listener(NULL, "x"));
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_spec_example),
        T(test_defaults),
        T(test_no_listener),
        T(test_durations),
        T(test_sizes),
        T(test_bools),
        T(test_addr_valid),
        T(test_addr_invalid),
        T(test_addr_keys),
        T(test_numbers),
        T(test_duration_keys),
        T(test_duration_cap),
        T(test_size_keys),
        T(test_bool_keys),
        T(test_keywords),
        T(test_keyword_errors),
        T(test_source),
        T(test_proxy_protocol_from),
        T(test_proxy_protocol_from_errors),
        T(test_server_options),
        T(test_server_errors),
        T(test_section_header_errors),
        T(test_section_types_case),
        T(test_duplicate_names),
        T(test_unknown_and_duplicate_keys),
        T(test_repeatable_keys),
        T(test_syntax_errors),
        T(test_missing_required),
        T(test_tcp_listener),
        T(test_sni_routes),
        T(test_references),
        T(test_forward_references),
        T(test_route_paths),
        T(test_route_prefix_keys),
        T(test_hash_comment_hint),
        T(test_route_hosts),
        T(test_route_methods),
        T(test_route_headers),
        T(test_route_forwarding_headers),
        T(test_duplicate_routes),
        T(test_distinct_routes),
        T(test_env),
        T(test_env_errors),
        T(test_indentation),
        T(test_crlf_and_bom),
        T(test_long_line),
        T(test_many_errors),
        T(test_bad_route_not_compared),
        T(test_load_file),
        T(test_load_file_errors),
        T(test_missing_file),
        T(test_errors_append),
        T(test_free_null),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
