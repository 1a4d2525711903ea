/* Unit tests for http_parse.c and http_write.c: the strict request parser
 * against a corpus of raw requests, and the heads ferry writes (upstream
 * request, client response, its own errors), byte for byte.
 *
 * The corpus lives in tests/data/requests: one NNN-name.http file per case,
 * written by make_corpus.py, and MANIFEST giving each file's verdict: `ok`
 * (every request in the file accepted and framed to its last byte) or the
 * status of the first refusal. Each file is its own cmocka test, so a failure
 * names the file. Each file is parsed twice, as the proxy will: the whole
 * buffer at once, then one byte per call (growing TO, same BASE); both passes
 * must reach the same verdict at the same offsets.
 *
 * The corpus directory is argv[1], or by default the one next to this
 * source file (derived from __FILE__, which CMake passes as an absolute
 * path). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ferry/config.h"
#include "ferry/http.h"

#define CORPUS_FROM_SOURCE "unit/test_http.c"
#define CORPUS_SUBDIR      "data/requests"
#define MAX_MESSAGES       16 /* requests per corpus file */

static char corpus_dir[4096];

/* Heap blocks the running test holds; held_teardown frees what is left
 * when an assertion ends a test early (cmocka longjmps out of it), so a
 * failing test does not turn into a leak report. */
static void *held_blocks[16];
static size_t nheld_blocks;

static void *held_alloc(size_t n) {
    assert_true(nheld_blocks < FERRY_ARRAY_LEN(held_blocks));
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    held_blocks[nheld_blocks++] = p;
    return p;
}

static void held_free(void *p) {
    for (size_t i = 0; i < nheld_blocks; i++) {
        if (held_blocks[i] == p) {
            held_blocks[i] = held_blocks[--nheld_blocks];
            break;
        }
    }
    free(p);
}

static int held_teardown(void **state) {
    (void)state;
    while (nheld_blocks)
        free(held_blocks[--nheld_blocks]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Running a buffer through the parser                                      */
/* ------------------------------------------------------------------------ */

/* What one pass over a buffer found. */
struct verdict {
    int status;                /* 0: all accepted; -1: ended inside a message; else the refusal */
    const char *text;          /* error_text of the refusal */
    bool in_body;              /* the refusal came from http_parse_body, after the head */
    unsigned messages;         /* requests completed */
    size_t ends[MAX_MESSAGES]; /* offset one past each completed request */
};

/* One request starting at BUF[0]: the head, then the body over the rest,
 * either all at once or one byte per call. Returns the bytes the request
 * took, 0 when the buffer ends inside it, -1 on a refusal (status in M). */
static long run_message(struct http_msg *m, const char *buf, size_t len, bool bytewise,
                        bool *in_body) {
    http_msg_init(m, true, false);
    int r = HTTP_MORE;
    if (!bytewise)
        r = http_parse_head(m, buf, 0, len);
    else
        for (size_t to = 1; to <= len && r == HTTP_MORE; to++)
            r = http_parse_head(m, buf, to - 1, to);
    if (r == HTTP_ERROR) {
        assert_true(m->error_status >= 400);
        return -1;
    }
    if (r == HTTP_MORE) return 0;
    assert_true(m->head_done);
    *in_body = true;
    assert_true(m->head_end <= len);
    const char *data = buf + m->head_end;
    size_t rest = len - m->head_end, used = 0, c = 0;
    bool has_body = http_msg_has_body(m);
    if (!bytewise || rest == 0) {
        r = http_parse_body(m, data, rest, &used);
    } else {
        r = HTTP_MORE;
        for (size_t i = 0; i < rest && r == HTTP_MORE; i++) {
            r = http_parse_body(m, data + i, 1, &c);
            used += c;
        }
    }
    if (r == HTTP_ERROR) return -1;
    if (r == HTTP_MORE) return 0;
    if (!has_body) assert_int_equal(used, 0); /* no body: nothing of the rest is ours */
    assert_true(m->message_done);
    return (long)(m->head_end + used);
}

/* Every request in BUF[0, LEN), each parsed with a fresh msg whose base is
 * its first byte (spans are 32-bit offsets from the base). */
static void run_buffer(const char *buf, size_t len, bool bytewise, struct verdict *v) {
    struct http_msg *m = held_alloc(sizeof(*m));
    memset(v, 0, sizeof(*v));
    size_t pos = 0;
    while (pos < len) {
        bool in_body = false;
        long n = run_message(m, buf + pos, len - pos, bytewise, &in_body);
        if (n < 0) {
            v->status = m->error_status;
            v->in_body = in_body;
            v->text = m->error_text;
            break;
        }
        if (n == 0) {
            v->status = -1;
            break;
        }
        pos += (size_t)n;
        assert_true(v->messages < MAX_MESSAGES);
        v->ends[v->messages++] = pos;
    }
    held_free(m);
}

static void verdict_name(const struct verdict *v, char *out, size_t cap) {
    if (v->status == 0)
        snprintf(out, cap, "ok");
    else if (v->status < 0)
        snprintf(out, cap, "incomplete");
    else
        snprintf(out, cap, "%d %s", v->status, v->in_body ? "body" : "head");
}

/* ------------------------------------------------------------------------ */
/* The corpus                                                               */
/* ------------------------------------------------------------------------ */

struct corpus_case {
    char file[128];
    char expect[16]; /* "ok", or a status and the stage: "400 head", "400 body" */
};

static struct corpus_case *corpus;
static size_t ncorpus;

/* An exact-size heap copy of PATH (no terminator, so ASan sees overreads). */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char tmp[65536];
    *len = fread(tmp, 1, sizeof(tmp), f);
    fclose(f);
    char *p = held_alloc(*len);
    memcpy(p, tmp, *len);
    return p;
}

static void test_corpus_file(void **state) {
    const struct corpus_case *c = *state;
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", corpus_dir, c->file);
    size_t len = 0;
    char *buf = read_file(path, &len);
    if (!buf) fail_msg("%s: cannot read", path);
    struct verdict whole, bytes;
    run_buffer(buf, len, false, &whole);
    run_buffer(buf, len, true, &bytes);
    held_free(buf);
    char got[32], got_bytes[32];
    verdict_name(&whole, got, sizeof(got));
    verdict_name(&bytes, got_bytes, sizeof(got_bytes));
    if (strcmp(got, c->expect) != 0)
        fail_msg("%s: want %s, got %s (%s)", c->file, c->expect, got,
                 whole.text ? whole.text : "accepted");
    bool same = whole.status == bytes.status && whole.in_body == bytes.in_body &&
                whole.messages == bytes.messages &&
                memcmp(whole.ends, bytes.ends, sizeof(whole.ends)) == 0 &&
                (whole.text == bytes.text ||
                 (whole.text && bytes.text && strcmp(whole.text, bytes.text) == 0));
    if (!same)
        fail_msg("%s: one byte at a time gives %s (%s, %u messages), whole buffer %s (%s, %u)",
                 c->file, got_bytes, bytes.text ? bytes.text : "accepted", bytes.messages, got,
                 whole.text ? whole.text : "accepted", whole.messages);
}

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Reads MANIFEST. Returns -1 (after saying why) when it cannot. */
static int load_manifest(void) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/MANIFEST", corpus_dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "test_http: cannot open %s\n", path);
        return -1;
    }
    char line[512];
    size_t cap = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        if (ncorpus == cap) {
            cap = cap ? 2 * cap : 64;
            corpus = realloc(corpus, cap * sizeof(*corpus));
            if (!corpus) abort();
        }
        struct corpus_case *c = &corpus[ncorpus];
        char verdict[8], stage[8];
        int n = sscanf(line, "%127s %7s %7s", c->file, verdict, stage);
        if (n == 3)
            snprintf(c->expect, sizeof(c->expect), "%s %s", verdict, stage);
        else if (n == 2)
            snprintf(c->expect, sizeof(c->expect), "%s", verdict);
        if (n < 2) {
            fprintf(stderr, "test_http: %s: bad line: %s", path, line);
            fclose(f);
            return -1;
        }
        ncorpus++;
    }
    fclose(f);
    return 0;
}

/* MANIFEST and the directory agree: every .http file has a verdict, every
 * verdict a file, and the verdicts are well-formed. */
static void test_manifest_complete(void **state) {
    (void)state;
    assert_true(ncorpus >= 60);
    DIR *d = opendir(corpus_dir);
    assert_non_null(d);
    size_t files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!has_suffix(e->d_name, ".http")) continue;
        files++;
        bool listed = false;
        for (size_t i = 0; i < ncorpus && !listed; i++)
            listed = strcmp(corpus[i].file, e->d_name) == 0;
        if (!listed) fail_msg("%s is not in MANIFEST", e->d_name);
    }
    closedir(d);
    assert_int_equal(files, ncorpus);
    for (size_t i = 0; i < ncorpus; i++) {
        const char *x = corpus[i].expect;
        bool status = strlen(x) == 8 && (x[0] == '4' || x[0] == '5') && x[1] >= '0' &&
                      x[1] <= '9' && x[2] >= '0' && x[2] <= '9' &&
                      (strcmp(x + 3, " head") == 0 || strcmp(x + 3, " body") == 0);
        if (strcmp(x, "ok") != 0 && !status) fail_msg("%s: bad verdict %s", corpus[i].file, x);
    }
}

/* ------------------------------------------------------------------------ */
/* Helpers for the head-building tests                                      */
/* ------------------------------------------------------------------------ */

/* Parses the head TEXT (which must stay alive) into a heap msg. */
static struct http_msg *parse(const char *text, bool is_request, bool head_request) {
    struct http_msg *m = held_alloc(sizeof(*m));
    http_msg_init(m, is_request, head_request);
    int r = http_parse_head(m, text, 0, strlen(text));
    if (r != HTTP_DONE)
        fail_msg("head not accepted (%d %s): %s", m->error_status,
                 m->error_text ? m->error_text : "incomplete", text);
    return m;
}

static struct http_msg *parse_req(const char *text) {
    return parse(text, true, false);
}

static const struct http_request_rewrite rw_plain = {
    .client_addr = "192.0.2.7",
    .proto = "http",
    .request_id = "gen-id",
    .default_host = "10.0.0.5:3000",
};

/* Compares with the whole expected text, showing both on a mismatch. */
static void assert_head(const char *got, size_t len, const char *want) {
    if (len != strlen(want) || memcmp(got, want, len) != 0)
        fail_msg("head differs\n--- want (%zu)\n%s--- got (%zu)\n%.*s---", strlen(want), want, len,
                 (int)len, got);
}

static void check_request(const char *in, const struct http_request_rewrite *rw, const char *want) {
    struct http_msg *m = parse_req(in);
    char out[4096];
    size_t n = http_build_request(out, sizeof(out), m, rw);
    assert_head(out, n, want);
    held_free(m);
}

/* A route with only PATH (a path_prefix) and strip_prefix set; tests add
 * the headers they need. */
static struct config_route route_with(const char *path, bool strip) {
    static char name[] = "api";
    struct config_route r = {0};
    r.name = name;
    r.path = (char *)path;
    r.strip_prefix = strip;
    return r;
}

/* ------------------------------------------------------------------------ */
/* http_build_request                                                       */
/* ------------------------------------------------------------------------ */

static void test_request_forwarded_headers(void **state) {
    (void)state;
    /* XFF appended to the chain (two headers joined in order); client
     * X-Forwarded-Proto/Host replaced; other fields unchanged, in order. */
    check_request("GET /x?y=1 HTTP/1.1\r\n"
                  "Host: a.example\r\n"
                  "X-Forwarded-For: 203.0.113.1, 198.51.100.2\r\n"
                  "User-Agent: t\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: evil.example\r\n"
                  "x-forwarded-for: 203.0.113.9\r\n"
                  "\r\n",
                  &rw_plain,
                  "GET /x?y=1 HTTP/1.1\r\n"
                  "Host: a.example\r\n"
                  "User-Agent: t\r\n"
                  "X-Forwarded-For: 203.0.113.1, 198.51.100.2, 203.0.113.9, 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: a.example\r\n"
                  "X-Request-Id: gen-id\r\n"
                  "\r\n");
    /* No chain yet: the client alone. Values are trimmed. */
    check_request("POST /p HTTP/1.1\r\nHost:   a.example:8080  \r\nContent-Length: 0\r\n\r\n",
                  &rw_plain,
                  "POST /p HTTP/1.1\r\n"
                  "Host: a.example:8080\r\n"
                  "Content-Length: 0\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: a.example:8080\r\n"
                  "X-Request-Id: gen-id\r\n"
                  "\r\n");
}

static void test_request_id_kept(void **state) {
    (void)state;
    check_request("GET / HTTP/1.1\r\nX-Request-Id: abc-123\r\nHost: h\r\n\r\n", &rw_plain,
                  "GET / HTTP/1.1\r\n"
                  "X-Request-Id: abc-123\r\n"
                  "Host: h\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: h\r\n"
                  "\r\n");
    struct http_msg *m = parse_req("GET / HTTP/1.1\r\nHost: h\r\nx-request-id: Q\r\n\r\n");
    assert_int_equal(m->request_id, 1);
    held_free(m);
}

static void test_request_hop_by_hop(void **state) {
    (void)state;
    /* Connection, the names it lists, Keep-Alive, Proxy-Connection, TE and
     * Upgrade (not websocket here) stay on this hop. */
    check_request("GET / HTTP/1.1\r\n"
                  "Host: h\r\n"
                  "Connection: keep-alive, X-Secret, upgrade\r\n"
                  "Keep-Alive: timeout=5\r\n"
                  "Proxy-Connection: keep-alive\r\n"
                  "TE: trailers\r\n"
                  "Upgrade: h2c\r\n"
                  "x-secret: 1\r\n"
                  "X-Kept: 2\r\n"
                  "\r\n",
                  &rw_plain,
                  "GET / HTTP/1.1\r\n"
                  "Host: h\r\n"
                  "X-Kept: 2\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: h\r\n"
                  "X-Request-Id: gen-id\r\n"
                  "\r\n");
    struct http_msg *m = parse_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                                   "Upgrade: h2c\r\n\r\n");
    assert_false(m->upgrade_websocket);
    held_free(m);
}

static void test_request_websocket(void **state) {
    (void)state;
    const char *in = "GET /ws HTTP/1.1\r\n"
                     "Host: h\r\n"
                     "Connection: keep-alive, Upgrade\r\n"
                     "Upgrade: WebSocket\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n";
    struct http_msg *m = parse_req(in);
    assert_true(m->upgrade_websocket);
    held_free(m);
    check_request(in, &rw_plain,
                  "GET /ws HTTP/1.1\r\n"
                  "Host: h\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: h\r\n"
                  "X-Request-Id: gen-id\r\n"
                  "Connection: upgrade\r\n"
                  "Upgrade: websocket\r\n"
                  "\r\n");
    /* Upgrade: websocket without Connection: upgrade is no upgrade. */
    m = parse_req("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
    assert_false(m->upgrade_websocket);
    held_free(m);
}

/* RFC 9110 7.8: Upgrade on HTTP/1.0 is ignored, and dropped as hop-by-hop. */
static void test_request_http10_upgrade_ignored(void **state) {
    (void)state;
    const char *in = "GET /ws HTTP/1.0\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
                     "Upgrade: websocket\r\n\r\n";
    struct http_msg *m = parse_req(in);
    assert_false(m->upgrade_websocket);
    held_free(m);
    check_request(in, &rw_plain,
                  "GET /ws HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: gen-id\r\n\r\n");
}

/* Headers ferry manages: a client's X-Forwarded-For that Connection lists
 * or the route removes is dropped before ferry appends the client; a
 * removed X-Request-Id gives way to ferry's own. */
static void test_request_managed_headers(void **state) {
    (void)state;
    check_request("GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For\r\n"
                  "X-Forwarded-For: 6.6.6.6\r\n\r\n",
                  &rw_plain,
                  "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: gen-id\r\n\r\n");
    static char rm0[] = "x-forwarded-for", rm1[] = "X-Request-ID";
    static char *rm[] = {rm0, rm1};
    struct config_route r = route_with("/", false);
    r.remove_request_headers = rm;
    r.nremove_request_headers = FERRY_ARRAY_LEN(rm);
    struct http_request_rewrite rw = rw_plain;
    rw.route = &r;
    const char *in = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6\r\n"
                     "X-Request-Id: client-id\r\n\r\n";
    check_request(in, &rw,
                  "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: gen-id\r\n\r\n");
    struct http_msg *m = parse_req(in);
    assert_false(http_keeps_request_id(m, &r));
    assert_true(http_keeps_request_id(m, NULL));
    held_free(m);
}

static void strip_case(const char *prefix, const char *target, const char *want_target) {
    struct config_route r = route_with(prefix, true);
    struct http_request_rewrite rw = rw_plain;
    rw.route = &r;
    char in[256], want[512];
    snprintf(in, sizeof(in), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", target);
    snprintf(want, sizeof(want),
             "GET %s HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\n"
             "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: gen-id\r\n\r\n",
             want_target);
    check_request(in, &rw, want);
}

static void test_request_strip_prefix(void **state) {
    (void)state;
    strip_case("/api/", "/api/users", "/users");
    strip_case("/api/", "/api/", "/");
    strip_case("/api/", "/api/users?id=1&x=/api/", "/users?id=1&x=/api/");
    strip_case("/api", "/api/users", "/users");
    strip_case("/api", "/api", "/");
    strip_case("/api", "/api?q=1", "/?q=1");
    strip_case("/api", "/api/", "/");
    strip_case("/", "/x/y", "/x/y");
    /* Absolute-form is cut to origin-form before the prefix comes off. */
    strip_case("/api/", "http://h/api/users?z", "/users?z");
    /* strip_prefix off, or an exact `path`: the target goes as it came. */
    struct config_route r = route_with("/api/", false);
    struct http_request_rewrite rw = rw_plain;
    rw.route = &r;
    check_request("GET /api/users HTTP/1.1\r\nHost: h\r\n\r\n", &rw,
                  "GET /api/users HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: gen-id\r\n\r\n");
    r = route_with("/api", true);
    r.path_exact = true;
    check_request("GET /api HTTP/1.1\r\nHost: h\r\n\r\n", &rw,
                  "GET /api HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: gen-id\r\n\r\n");
}

static void test_request_absolute_form(void **state) {
    (void)state;
    check_request("GET http://a.example:8080/p/q?r=1 HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
                  &rw_plain,
                  "GET /p/q?r=1 HTTP/1.1\r\n"
                  "Host: a.example:8080\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: a.example:8080\r\n"
                  "X-Request-Id: gen-id\r\n"
                  "\r\n");
    /* No path at all: "/"; a query right after the authority keeps it. */
    check_request("GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", &rw_plain,
                  "GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a.example\r\n"
                  "X-Request-Id: gen-id\r\n\r\n");
    check_request("GET http://a.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n", &rw_plain,
                  "GET /?q HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a.example\r\n"
                  "X-Request-Id: gen-id\r\n\r\n");
    /* OPTIONS * stays "*". */
    check_request("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &rw_plain,
                  "OPTIONS * HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: gen-id\r\n\r\n");
}

static void test_request_http10_default_host(void **state) {
    (void)state;
    /* Upstream always gets HTTP/1.1; a 1.0 request without Host gets the
     * server's host[:port]. The client's Connection is not forwarded. */
    check_request("GET /old HTTP/1.0\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n", &rw_plain,
                  "GET /old HTTP/1.1\r\n"
                  "Accept: */*\r\n"
                  "Host: 10.0.0.5:3000\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Request-Id: gen-id\r\n"
                  "\r\n");
    struct http_msg *m = parse_req("GET / HTTP/1.0\r\n\r\n");
    assert_true(m->conn_close);
    assert_int_equal(m->minor, 0);
    held_free(m);
    m = parse_req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_false(m->conn_close);
    held_free(m);
    /* With a Host, the client's is kept and no default added. */
    check_request("GET / HTTP/1.0\r\nHost: a.example\r\n\r\n", &rw_plain,
                  "GET / HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\nX-Forwarded-Host: a.example\r\n"
                  "X-Request-Id: gen-id\r\n\r\n");
}

static void test_request_route_headers(void **state) {
    (void)state;
    static struct config_header add[] = {{"X-Env", "prod"}, {"X-Empty", ""}};
    static char rm0[] = "X-Debug", rm1[] = "cookie";
    static char *rm[] = {rm0, rm1};
    struct config_route r = route_with("/", false);
    r.add_request_headers = add;
    r.nadd_request_headers = FERRY_ARRAY_LEN(add);
    r.remove_request_headers = rm;
    r.nremove_request_headers = FERRY_ARRAY_LEN(rm);
    struct http_request_rewrite rw = rw_plain;
    rw.route = &r;
    check_request("PUT /f HTTP/1.1\r\n"
                  "Host: h\r\n"
                  "x-debug: 1\r\n"
                  "Cookie: a=b\r\n"
                  "X-Debugger: kept\r\n"
                  "Content-Length: 0\r\n"
                  "X-Debug: 2\r\n"
                  "\r\n",
                  &rw,
                  "PUT /f HTTP/1.1\r\n"
                  "Host: h\r\n"
                  "X-Debugger: kept\r\n"
                  "Content-Length: 0\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: h\r\n"
                  "X-Request-Id: gen-id\r\n"
                  "X-Env: prod\r\n"
                  "X-Empty: \r\n"
                  "\r\n");
}

static void test_request_chunked_forwarded(void **state) {
    (void)state;
    /* The body streams as it came: Transfer-Encoding goes upstream. */
    check_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", &rw_plain,
                  "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: h\r\nX-Request-Id: gen-id\r\n\r\n");
}

/* Lines of the head OUT[0, LEN) whose field name is NAME (any case). */
static int count_field(const char *out, size_t len, const char *name) {
    size_t n = strlen(name);
    int count = 0;
    for (size_t i = 0; i + n < len; i++) {
        if ((i == 0 || out[i - 1] == '\n') && strncasecmp(out + i, name, n) == 0 &&
            out[i + n] == ':')
            count++;
    }
    return count;
}

/* Builds the upstream head of IN, or returns 0 when the parser refused IN
 * (a refusal is a fine answer too: nothing ambiguous goes upstream). */
static size_t build_or_refuse(const char *in, char *out, size_t cap) {
    struct http_msg *m = held_alloc(sizeof(*m));
    http_msg_init(m, true, false);
    size_t n = 0;
    if (http_parse_head(m, in, 0, strlen(in)) == HTTP_DONE) {
        n = http_build_request(out, cap, m, &rw_plain);
        assert_true(n > 0);
    } else {
        assert_int_equal(m->error_status, 400);
    }
    held_free(m);
    return n;
}

/* A name listed in Connection is hop-by-hop, but listing Host or a framing
 * field must not make it vanish: the upstream would then frame the body
 * differently from ferry (Content-Length or Transfer-Encoding gone: the
 * body is read as the next request) or route without Host. Either the
 * request is refused or the field goes upstream as it came. */
static void test_request_connection_cannot_drop_end_to_end(void **state) {
    (void)state;
    static const struct {
        const char *in;
        const char *field; /* must still be there, once */
    } cases[] = {
        {"POST / HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
         "Content-Length"},
        {"POST / HTTP/1.1\r\nHost: h\r\nConnection: close, Transfer-Encoding\r\n"
         "Transfer-Encoding: chunked\r\n\r\n",
         "Transfer-Encoding"},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: host\r\n\r\n", "Host"},
    };
    int problems = 0;
    for (size_t i = 0; i < FERRY_ARRAY_LEN(cases); i++) {
        char out[2048];
        size_t n = build_or_refuse(cases[i].in, out, sizeof(out));
        if (n > 0 && count_field(out, n, cases[i].field) != 1) {
            print_error("%s dropped (listed in Connection):\n%.*s", cases[i].field, (int)n, out);
            problems++;
        }
    }
    assert_int_equal(problems, 0);
}

/* SPEC: X-Request-Id kept if the client sent one, else generated: the
 * upstream sees exactly one, whatever the client did. */
static void test_request_id_exactly_one(void **state) {
    (void)state;
    static char long_id[300];
    memset(long_id, 'i', sizeof(long_id) - 1);
    char in[1024];
    const char *variants[] = {
        "X-Request-Id: abc\r\n",
        "X-Request-Id:\r\n",
        "X-Request-Id:    \r\n",
        "Connection: X-Request-Id\r\nX-Request-Id: abc\r\n",
        NULL, /* long_id */
    };
    int problems = 0;
    for (size_t i = 0; i < FERRY_ARRAY_LEN(variants); i++) {
        if (variants[i])
            snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n", variants[i]);
        else
            snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: %s\r\n\r\n",
                     long_id);
        char out[2048];
        size_t n = build_or_refuse(in, out, sizeof(out));
        if (n > 0 && count_field(out, n, "X-Request-Id") != 1) {
            print_error("%d X-Request-Id upstream for:\n%s", count_field(out, n, "X-Request-Id"),
                        in);
            problems++;
        }
    }
    assert_int_equal(problems, 0);
}

static void test_request_output_too_small(void **state) {
    (void)state;
    struct http_msg *m = parse_req("GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n"
                                   "X-Request-Id: r\r\n\r\n");
    char full[1024];
    size_t n = http_build_request(full, sizeof(full), m, &rw_plain);
    assert_true(n > 0);
    char *out = held_alloc(n);
    for (size_t cap = 0; cap < n; cap++)
        assert_int_equal(http_build_request(out, cap, m, &rw_plain), 0);
    assert_int_equal(http_build_request(out, n, m, &rw_plain), n);
    assert_memory_equal(out, full, n);
    held_free(out);
    held_free(m);
}

/* ------------------------------------------------------------------------ */
/* http_build_response                                                      */
/* ------------------------------------------------------------------------ */

static void check_response(const char *in, const struct http_response_rewrite *rw,
                           const char *want) {
    struct http_msg *m = parse(in, false, false);
    char out[4096];
    size_t n = http_build_response(out, sizeof(out), m, rw);
    assert_head(out, n, want);
    held_free(m);
}

static const char upstream_resp[] = "HTTP/1.1 200 OK\r\n"
                                    "Content-Type: text/html\r\n"
                                    "Connection: keep-alive, X-Internal\r\n"
                                    "Keep-Alive: timeout=5\r\n"
                                    "X-Internal: secret\r\n"
                                    "Transfer-Encoding: chunked\r\n"
                                    "Set-Cookie: a=b\r\n"
                                    "\r\n";

static void test_response_basic(void **state) {
    (void)state;
    static struct config_header add[] = {{"X-Frame-Options", "DENY"}};
    struct config_route r = route_with("/", false);
    r.add_response_headers = add;
    r.nadd_response_headers = 1;
    struct http_response_rewrite rw = {
        .route = &r, .request_id = "rid-1", .client_minor = 1, .close = false, .dechunk = false};
    check_response(upstream_resp, &rw,
                   "HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/html\r\n"
                   "Transfer-Encoding: chunked\r\n"
                   "Set-Cookie: a=b\r\n"
                   "X-Request-Id: rid-1\r\n"
                   "X-Frame-Options: DENY\r\n"
                   "\r\n");
    /* Closing after this one; the route absent. */
    rw = (struct http_response_rewrite){.request_id = "rid-1", .client_minor = 1, .close = true};
    check_response(upstream_resp, &rw,
                   "HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/html\r\n"
                   "Transfer-Encoding: chunked\r\n"
                   "Set-Cookie: a=b\r\n"
                   "X-Request-Id: rid-1\r\n"
                   "Connection: close\r\n"
                   "\r\n");
    /* An HTTP/1.0 client kept alive, its body re-framed without chunks. */
    rw = (struct http_response_rewrite){.request_id = "rid-1", .client_minor = 0, .dechunk = true};
    check_response(upstream_resp, &rw,
                   "HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/html\r\n"
                   "Set-Cookie: a=b\r\n"
                   "X-Request-Id: rid-1\r\n"
                   "Connection: keep-alive\r\n"
                   "\r\n");
    /* The upstream's close is its own hop's business. */
    rw = (struct http_response_rewrite){.request_id = "rid-1", .client_minor = 0, .close = true};
    check_response("HTTP/1.0 404 Not Found\r\nConnection: close\r\nContent-Length: 3\r\n\r\n", &rw,
                   "HTTP/1.1 404 Not Found\r\n"
                   "Content-Length: 3\r\n"
                   "X-Request-Id: rid-1\r\n"
                   "Connection: close\r\n"
                   "\r\n");
}

static void test_response_request_id_present(void **state) {
    (void)state;
    struct http_response_rewrite rw = {.request_id = "rid-1", .client_minor = 1};
    check_response("HTTP/1.1 204 No Content\r\nx-request-id: up-7\r\n\r\n", &rw,
                   "HTTP/1.1 204 No Content\r\nx-request-id: up-7\r\n\r\n");
    /* 1xx: passed on bare. */
    check_response("HTTP/1.1 100 Continue\r\n\r\n", &rw, "HTTP/1.1 100 Continue\r\n\r\n");
}

/* 1xx, 204 and 304 have no body: framing fields they carry never reach the
 * client, or it would read the next response as this one's body. A HEAD
 * response keeps its Content-Length (the size GET would get). */
static void test_response_bodiless_framing_dropped(void **state) {
    (void)state;
    struct http_response_rewrite rw = {.request_id = "r", .client_minor = 1};
    check_response("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\nX-A: 1\r\n\r\n", &rw,
                   "HTTP/1.1 204 No Content\r\nX-A: 1\r\nX-Request-Id: r\r\n\r\n");
    check_response("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nETag: \"e\"\r\n\r\n",
                   &rw, "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nX-Request-Id: r\r\n\r\n");
    check_response("HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\nLink: </s.css>\r\n\r\n", &rw,
                   "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n");
    struct http_msg *m = parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", false, true);
    char out[512];
    size_t n = http_build_response(out, sizeof(out), m, &rw);
    assert_head(out, n, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nX-Request-Id: r\r\n\r\n");
    held_free(m);
}

/* A 101 switches to a websocket only when it says so. */
static void test_response_101_names_websocket(void **state) {
    (void)state;
    struct http_msg *m = parse("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                               "Upgrade: websocket\r\n\r\n", false, false);
    assert_true(m->upgrade_websocket);
    held_free(m);
    m = parse("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n", false, false);
    assert_false(m->upgrade_websocket);
    held_free(m);
    m = parse("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", false, false);
    assert_false(m->upgrade_websocket);
    held_free(m);
}

/* The response side of the same rule: the client must get the framing the
 * upstream sent (unless ferry re-frames it) and exactly one X-Request-Id. */
static void test_response_connection_cannot_drop_end_to_end(void **state) {
    (void)state;
    static const struct {
        const char *in;
        const char *field;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
         "Content-Length"},
        {"HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
         "Transfer-Encoding"},
        {"HTTP/1.1 200 OK\r\nConnection: x-request-id\r\nX-Request-Id: up\r\n"
         "Content-Length: 0\r\n\r\n",
         "X-Request-Id"},
    };
    struct http_response_rewrite rw = {.request_id = "rid-1", .client_minor = 1};
    int problems = 0;
    for (size_t i = 0; i < FERRY_ARRAY_LEN(cases); i++) {
        struct http_msg *m = held_alloc(sizeof(*m));
        http_msg_init(m, false, false);
        if (http_parse_head(m, cases[i].in, 0, strlen(cases[i].in)) == HTTP_DONE) {
            char out[2048];
            size_t n = http_build_response(out, sizeof(out), m, &rw);
            assert_true(n > 0);
            if (count_field(out, n, cases[i].field) != 1) {
                print_error("%s not passed on once (listed in Connection):\n%.*s", cases[i].field,
                            (int)n, out);
                problems++;
            }
        } else {
            assert_int_equal(m->error_status, 502);
        }
        held_free(m);
    }
    assert_int_equal(problems, 0);
}

static void test_response_output_too_small(void **state) {
    (void)state;
    struct http_msg *m = parse(upstream_resp, false, false);
    struct http_response_rewrite rw = {.request_id = "rid", .client_minor = 0, .close = true};
    char full[1024];
    size_t n = http_build_response(full, sizeof(full), m, &rw);
    assert_true(n > 0);
    char out[1024];
    for (size_t cap = 0; cap < n; cap++)
        assert_int_equal(http_build_response(out, cap, m, &rw), 0);
    assert_int_equal(http_build_response(out, n, m, &rw), n);
    assert_memory_equal(out, full, n);
    held_free(m);
}

/* ------------------------------------------------------------------------ */
/* http_build_error                                                         */
/* ------------------------------------------------------------------------ */

static void test_error_responses(void **state) {
    (void)state;
    static const struct {
        int status;
        const char *reason;
    } table[] = {
        {400, "Bad Request"},
        {404, "Not Found"},
        {408, "Request Timeout"},
        {413, "Content Too Large"},
        {431, "Request Header Fields Too Large"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    };
    for (size_t i = 0; i < FERRY_ARRAY_LEN(table); i++) {
        const char *detail = "route api, upstream app: connection refused";
        char body[256], want[1024], out[1024];
        int blen =
            snprintf(body, sizeof(body), "%d %s: %s\n", table[i].status, table[i].reason, detail);
        snprintf(want, sizeof(want),
                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                 "X-Request-Id: rid-9\r\nConnection: close\r\n\r\n%s",
                 table[i].status, table[i].reason, blen, body);
        struct http_error e = {.status = table[i].status, .detail = detail, .request_id = "rid-9",
                               .close = true};
        size_t n = http_build_error(out, sizeof(out), &e);
        assert_head(out, n, want);
        assert_string_equal(http_reason(table[i].status), table[i].reason);
        /* Parsed back as a response: framed exactly by its Content-Length. */
        struct http_msg *m = held_alloc(sizeof(*m));
        http_msg_init(m, false, false);
        assert_int_equal(http_parse_head(m, out, 0, n), HTTP_DONE);
        assert_int_equal(m->status, table[i].status);
        assert_int_equal(m->content_length, (uint64_t)blen);
        assert_true(m->conn_close);
        assert_int_equal(m->head_end + (size_t)blen, n);
        size_t used = 0;
        assert_int_equal(http_parse_body(m, out + m->head_end, n - m->head_end, &used), HTTP_DONE);
        assert_int_equal(used, (size_t)blen);
        held_free(m);
    }
}

static size_t build_error(char *out, size_t cap, int status, const char *detail,
                          const char *rid, bool close) {
    struct http_error e = {.status = status, .detail = detail, .request_id = rid, .close = close};
    return http_build_error(out, cap, &e);
}

static void test_error_variants(void **state) {
    (void)state;
    char out[2048];
    /* No id, kept open, no detail: the reason stands in. */
    size_t n = build_error(out, sizeof(out), 404, NULL, NULL, false);
    assert_head(out, n,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 25\r\n"
                "\r\n404 Not Found: Not Found\n");
    /* A long detail is cut; Content-Length still tells the truth. */
    char detail[1500];
    memset(detail, 'd', sizeof(detail) - 1);
    detail[sizeof(detail) - 1] = '\0';
    n = build_error(out, sizeof(out), 502, detail, "r", true);
    assert_true(n > 0);
    const char *body = strstr(out, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    size_t blen = n - (size_t)(body - out);
    char cl[64];
    snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", blen);
    assert_non_null(strstr(out, cl));
    assert_int_equal(out[n - 1], '\n');
    /* Too small for the whole response: 0, never a truncated one. */
    size_t full = build_error(out, sizeof(out), 400, "x", "rid", true);
    for (size_t cap = 0; cap <= full; cap++)
        assert_int_equal(build_error(out, cap, 400, "x", "rid", true), 0);
    assert_int_equal(build_error(out, full + 1, 400, "x", "rid", true), full);
}

/* To HEAD: GET's headers (Content-Length included), no body; with a Date. */
static void test_error_to_head(void **state) {
    (void)state;
    char out[1024], date[HTTP_DATE_LEN];
    http_date(date, 784111777);
    struct http_error e = {.status = 404, .detail = "no route", .date = date, .head = true};
    size_t n = http_build_error(out, sizeof(out), &e);
    assert_head(out, n,
                "HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                "Content-Type: text/plain\r\nContent-Length: 24\r\n\r\n");
    e.head = false;
    n = http_build_error(out, sizeof(out), &e);
    assert_memory_equal(out + n - 24, "404 Not Found: no route\n", 24);
}

static void test_http_date(void **state) {
    (void)state;
    static const struct {
        int64_t t;
        const char *want;
    } cases[] = {
        {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
        {784111777, "Sun, 06 Nov 1994 08:49:37 GMT"},
        {951782400, "Tue, 29 Feb 2000 00:00:00 GMT"},
        {1798761599, "Thu, 31 Dec 2026 23:59:59 GMT"},
        {4107542400, "Mon, 01 Mar 2100 00:00:00 GMT"},
        {-5, "Thu, 01 Jan 1970 00:00:00 GMT"},
    };
    for (size_t i = 0; i < FERRY_ARRAY_LEN(cases); i++) {
        char out[HTTP_DATE_LEN];
        http_date(out, cases[i].t);
        assert_string_equal(out, cases[i].want);
    }
}

/* ------------------------------------------------------------------------ */
/* Parsing responses and request bodies                                     */
/* ------------------------------------------------------------------------ */

/* Parses a response head at BUF[0]; returns the msg (heap). */
static struct http_msg *resp_head(const char *buf, size_t len, bool head_request) {
    struct http_msg *m = held_alloc(sizeof(*m));
    http_msg_init(m, false, head_request);
    assert_int_equal(http_parse_head(m, buf, 0, len), HTTP_DONE);
    return m;
}

/* A response that has no body (RFC 9112 6.3: HEAD, 1xx, 204, 304 end at
 * the blank line whatever their fields say): the next response's bytes are
 * not its. Returns the number of problems, each printed. */
static int no_body_problems(const char *head, bool head_request, int status) {
    char buf[512];
    int len = snprintf(buf, sizeof(buf), "%sHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", head);
    struct http_msg *m = resp_head(buf, (size_t)len, head_request);
    int problems = 0;
    assert_int_equal(m->status, status);
    if (http_msg_has_body(m)) {
        print_error("http_msg_has_body is true for%s: %s", head_request ? " (HEAD)" : "", head);
        problems++;
    }
    if (http_msg_needs_eof(m)) {
        print_error("http_msg_needs_eof is true for: %s", head);
        problems++;
    }
    size_t used = 99;
    int r = http_parse_body(m, buf + m->head_end, (size_t)len - m->head_end, &used);
    if (r != HTTP_DONE || used != 0 || m->body_bytes != 0) {
        print_error("http_parse_body on the next response gives %d, %zu bytes taken as body, "
                    "for: %s",
                    r, used, head);
        problems++;
    }
    held_free(m);
    return problems;
}

static void test_response_head_request(void **state) {
    (void)state;
    int problems = no_body_problems("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", true, 200);
    problems +=
        no_body_problems("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, 200);
    problems += no_body_problems("HTTP/1.1 200 OK\r\n\r\n", true, 200);
    assert_int_equal(problems, 0);
}

static void test_response_204_304(void **state) {
    (void)state;
    int problems = no_body_problems("HTTP/1.1 204 No Content\r\n\r\n", false, 204);
    problems += no_body_problems("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", false, 304);
    problems += no_body_problems("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false, 103);
    /* RFC 9110 8.6: a 304 may carry the Content-Length a 200 would have. */
    problems +=
        no_body_problems("HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n", false, 304);
    /* Not allowed (RFC 9110 8.6), but still no body (RFC 9112 6.3). */
    problems +=
        no_body_problems("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", false, 204);
    assert_int_equal(problems, 0);
}

static void test_response_chunked(void **state) {
    (void)state;
    static const char buf[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
                              "HTTP/1.1 200 OK\r\n";
    size_t len = sizeof(buf) - 1, tail = strlen("HTTP/1.1 200 OK\r\n");
    struct http_msg *m = resp_head(buf, len, false);
    assert_true(m->chunked);
    assert_true(http_msg_has_body(m));
    assert_false(http_msg_needs_eof(m));
    size_t used = 0;
    assert_int_equal(http_parse_body(m, buf + m->head_end, len - m->head_end, &used), HTTP_DONE);
    assert_int_equal(m->head_end + used, len - tail);
    assert_int_equal(m->body_bytes, 11);
    held_free(m);
}

static void test_response_read_until_close(void **state) {
    (void)state;
    static const char buf[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world";
    size_t len = sizeof(buf) - 1;
    struct http_msg *m = resp_head(buf, len, false);
    assert_true(http_msg_needs_eof(m));
    assert_true(http_msg_has_body(m));
    size_t used = 0;
    assert_int_equal(http_parse_body(m, buf + m->head_end, len - m->head_end, &used), HTTP_MORE);
    assert_int_equal(used, len - m->head_end);
    assert_int_equal(m->body_bytes, 11);
    int r = http_parse_eof(m);
    if (r != HTTP_DONE)
        fail_msg("http_parse_eof on a read-until-close body: %d (%d %s)", r, m->error_status,
                 m->error_text ? m->error_text : "");
    assert_true(m->message_done);
    held_free(m);
}

static void test_response_eof_cut_short(void **state) {
    (void)state;
    static const char buf[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello";
    size_t len = sizeof(buf) - 1;
    struct http_msg *m = resp_head(buf, len, false);
    size_t used = 0;
    assert_int_equal(http_parse_body(m, buf + m->head_end, len - m->head_end, &used), HTTP_MORE);
    assert_int_equal(http_parse_eof(m), HTTP_ERROR);
    assert_int_equal(m->error_status, 502);
    held_free(m);
}

static void test_response_continue_then_200(void **state) {
    (void)state;
    static const char buf[] = "HTTP/1.1 100 Continue\r\n\r\n"
                              "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    size_t len = sizeof(buf) - 1;
    struct http_msg *m = resp_head(buf, len, false);
    assert_int_equal(m->status, 100);
    assert_false(http_msg_has_body(m));
    size_t used = 99;
    assert_int_equal(http_parse_body(m, buf + m->head_end, len - m->head_end, &used), HTTP_DONE);
    assert_int_equal(used, 0);
    size_t at = m->head_end;
    held_free(m);
    m = resp_head(buf + at, len - at, false);
    assert_int_equal(m->status, 200);
    assert_int_equal(m->content_length, 5);
    assert_int_equal(http_parse_body(m, buf + at + m->head_end, len - at - m->head_end, &used),
                     HTTP_DONE);
    assert_int_equal(used, 5);
    assert_int_equal(at + m->head_end + used, len);
    held_free(m);
}

/* A response ferry cannot frame safely is the upstream's fault: 502. */
static void test_response_bad(void **state) {
    (void)state;
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
    };
    int problems = 0;
    for (size_t i = 0; i < FERRY_ARRAY_LEN(bad); i++) {
        struct http_msg *m = held_alloc(sizeof(*m));
        http_msg_init(m, false, false);
        int r = http_parse_head(m, bad[i], 0, strlen(bad[i]));
        if (r != HTTP_ERROR || m->error_status != 502) {
            print_error("response gives %d, status %d (%s), want 502: %s", r, m->error_status,
                        m->error_text ? m->error_text : "", bad[i]);
            problems++;
        }
        held_free(m);
    }
    assert_int_equal(problems, 0);
}

static void test_request_fields_learnt(void **state) {
    (void)state;
    struct http_msg *m = parse_req("POST /a/b?c=d HTTP/1.1\r\nHost: h\r\n"
                                   "Content-Length: 9223372036854775807\r\n"
                                   "Expect: 100-continue\r\nConnection: close\r\n\r\n");
    assert_true(m->has_length);
    assert_int_equal(m->content_length, INT64_MAX);
    assert_true(m->expect_continue);
    assert_true(m->conn_close);
    assert_int_equal(m->method, HTTP_POST);
    assert_int_equal(m->minor, 1);
    assert_int_equal(m->host, 0);
    assert_int_equal(m->path.len, 4);
    assert_memory_equal(http_span_ptr(m, m->path), "/a/b", 4);
    assert_true(http_msg_has_body(m));
    held_free(m);
    /* Skipped empty lines: the head starts after them. */
    m = parse_req("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(m->head_start, 4);
    assert_false(http_msg_has_body(m));
    held_free(m);
}

static void test_request_body_bytes(void **state) {
    (void)state;
    static const char buf[] = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "3\r\nabc\r\n00a\r\n0123456789\r\n0\r\n\r\n";
    struct http_msg *m = parse_req(buf);
    size_t len = sizeof(buf) - 1, used = 0;
    assert_int_equal(http_parse_body(m, buf + m->head_end, len - m->head_end, &used), HTTP_DONE);
    assert_int_equal(used, len - m->head_end);
    assert_int_equal(m->body_bytes, 13);
    held_free(m);
}

static void test_request_id_format(void **state) {
    (void)state;
    char a[33], b[33], c[33];
    http_request_id(a, 1, 2);
    http_request_id(b, 1, 2);
    http_request_id(c, 1, 3);
    assert_int_equal(strlen(a), 32);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    for (int i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
}

static void test_idempotent(void **state) {
    (void)state;
    assert_true(http_method_idempotent(HTTP_GET));
    assert_true(http_method_idempotent(HTTP_HEAD));
    assert_true(http_method_idempotent(HTTP_PUT));
    assert_true(http_method_idempotent(HTTP_DELETE));
    assert_false(http_method_idempotent(HTTP_POST));
    assert_false(http_method_idempotent(HTTP_PATCH));
}

/* ------------------------------------------------------------------------ */

static void set_corpus_dir(int argc, char **argv) {
    if (argc > 1) {
        snprintf(corpus_dir, sizeof(corpus_dir), "%s", argv[1]);
        return;
    }
    const char *src = __FILE__;
    size_t n = strlen(src), k = strlen(CORPUS_FROM_SOURCE);
    if (n >= k && strcmp(src + n - k, CORPUS_FROM_SOURCE) == 0)
        snprintf(corpus_dir, sizeof(corpus_dir), "%.*s%s", (int)(n - k), src, CORPUS_SUBDIR);
    else
        snprintf(corpus_dir, sizeof(corpus_dir), "tests/%s", CORPUS_SUBDIR);
}

int main(int argc, char **argv) {
    set_corpus_dir(argc, argv);
    const struct CMUnitTest unit[] = {
        cmocka_unit_test_teardown(test_request_forwarded_headers, held_teardown),
        cmocka_unit_test_teardown(test_request_id_kept, held_teardown),
        cmocka_unit_test_teardown(test_request_hop_by_hop, held_teardown),
        cmocka_unit_test_teardown(test_request_websocket, held_teardown),
        cmocka_unit_test_teardown(test_request_strip_prefix, held_teardown),
        cmocka_unit_test_teardown(test_request_absolute_form, held_teardown),
        cmocka_unit_test_teardown(test_request_http10_default_host, held_teardown),
        cmocka_unit_test_teardown(test_request_route_headers, held_teardown),
        cmocka_unit_test_teardown(test_request_chunked_forwarded, held_teardown),
        cmocka_unit_test_teardown(test_request_output_too_small, held_teardown),
        cmocka_unit_test_teardown(test_request_connection_cannot_drop_end_to_end, held_teardown),
        cmocka_unit_test_teardown(test_request_id_exactly_one, held_teardown),
        cmocka_unit_test_teardown(test_response_basic, held_teardown),
        cmocka_unit_test_teardown(test_response_request_id_present, held_teardown),
        cmocka_unit_test_teardown(test_response_output_too_small, held_teardown),
        cmocka_unit_test_teardown(test_response_connection_cannot_drop_end_to_end, held_teardown),
        cmocka_unit_test_teardown(test_error_responses, held_teardown),
        cmocka_unit_test_teardown(test_error_variants, held_teardown),
        cmocka_unit_test_teardown(test_error_to_head, held_teardown),
        cmocka_unit_test(test_http_date),
        cmocka_unit_test_teardown(test_response_bodiless_framing_dropped, held_teardown),
        cmocka_unit_test_teardown(test_response_101_names_websocket, held_teardown),
        cmocka_unit_test_teardown(test_request_http10_upgrade_ignored, held_teardown),
        cmocka_unit_test_teardown(test_request_managed_headers, held_teardown),
        cmocka_unit_test_teardown(test_response_head_request, held_teardown),
        cmocka_unit_test_teardown(test_response_204_304, held_teardown),
        cmocka_unit_test_teardown(test_response_chunked, held_teardown),
        cmocka_unit_test_teardown(test_response_read_until_close, held_teardown),
        cmocka_unit_test_teardown(test_response_eof_cut_short, held_teardown),
        cmocka_unit_test_teardown(test_response_continue_then_200, held_teardown),
        cmocka_unit_test_teardown(test_response_bad, held_teardown),
        cmocka_unit_test_teardown(test_request_fields_learnt, held_teardown),
        cmocka_unit_test_teardown(test_request_body_bytes, held_teardown),
        cmocka_unit_test_teardown(test_request_id_format, held_teardown),
        cmocka_unit_test_teardown(test_idempotent, held_teardown),
    };
    int failed = cmocka_run_group_tests_name("http", unit, NULL, NULL);
    if (load_manifest() < 0) return failed + 1;
    struct CMUnitTest *tests = calloc(ncorpus + 1, sizeof(*tests));
    if (!tests) abort();
    tests[0] = (struct CMUnitTest){"manifest", test_manifest_complete, NULL, NULL, NULL};
    for (size_t i = 0; i < ncorpus; i++)
        tests[i + 1] =
            (struct CMUnitTest){corpus[i].file, test_corpus_file, NULL, held_teardown, &corpus[i]};
    failed += _cmocka_run_group_tests("corpus", tests, ncorpus + 1, NULL, NULL);
    free(tests);
    free(corpus);
    return failed;
}
