/* log: the error log (levelled, to stderr) and the access log (one line per
 * HTTP request or TCP connection, to stdout, stderr or a file).
 *
 * Both are safe to call from any worker thread: each line is formatted into a
 * local buffer and written with one write(2), so lines from different
 * workers never interleave. */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry/config.h"
#include "ferry/util.h"

void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) FERRY_PRINTF(2, 3);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                        \
    do {                                                      \
        if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); \
    } while (0)

/* Opens the access log as the config says. Returns 0 or a negative errno;
 * on failure the previous destination stays in use. */
int access_log_open(enum access_log_target target, const char *path,
                    enum access_log_format format) FERRY_MUSTCHECK;
/* Opens and closes the destination as access_log_open() would (a missing
 * file is created): 0, or the negative errno a start would fail with. */
int access_log_check(enum access_log_target target, const char *path) FERRY_MUSTCHECK;
/* SIGUSR1: reopen the file (logrotate moved it away). */
int access_log_reopen(void) FERRY_MUSTCHECK;
void access_log_close(void);

/* One TCP-mode connection, as the access log reports it. */
struct access_tcp_entry {
    const char *client;   /* "ADDR:PORT" or "unix" */
    const char *listener; /* listener name */
    const char *upstream; /* server address as configured, or "-" */
    const char *route;    /* sni routing: the route taken or "-"; NULL: not written */
    uint64_t bytes_in;    /* from the client */
    uint64_t bytes_out;   /* to the client */
    double duration_s;
};

void access_log_tcp(const struct access_tcp_entry *e);

/* One HTTP request. Strings are NUL-terminated; "-" where unknown. */
struct access_http_entry {
    const char *client;
    const char *method;
    const char *target;
    const char *proto;      /* "HTTP/1.1" */
    int status;
    uint64_t bytes;         /* bytes sent to the client for this response */
    const char *referer;
    const char *user_agent;
    const char *route;
    const char *upstream;   /* server address, or "-" */
    double rt;              /* seconds from the first byte of the request to the last of the response */
    double urt;             /* seconds waiting for the upstream's response head, or -1 */
    const char *rid;
    /* A tunnel (a websocket after its 101), logged when it ends: the bytes
     * each way after the switch and its length. Not a tunnel: tunnel false. */
    bool tunnel;
    uint64_t tunnel_in, tunnel_out; /* from the client, to the client */
    double duration_s;              /* from the upgrade request to the end */
};

void access_log_http(const struct access_http_entry *e);

/* True when an access log is open: callers skip gathering fields when not. */
bool access_log_enabled(void);

/* The access log's escapers, exposed for tests. Each appends S to OUT and
 * returns the number of bytes written, never more than CAP, cutting only
 * between whole characters or escapes; OUT is not NUL-terminated.
 *
 * Text: bytes outside printable ASCII, '"' and '\\' become \xHH, so a
 * client's bytes cannot close a quoted field or start a line.
 * JSON (the inside of a string, no quotes): valid UTF-8 is copied, '"' and
 * '\\' are backslashed, control bytes and every byte that is not part of
 * valid UTF-8 become \u00HH (the code point of the same number). */
size_t log_text_escape(char *out, size_t cap, const char *s);
size_t log_json_escape(char *out, size_t cap, const char *s);

#endif
