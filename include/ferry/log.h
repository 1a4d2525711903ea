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
/* SIGUSR1: reopen the file (logrotate moved it away). */
int access_log_reopen(void) FERRY_MUSTCHECK;
void access_log_close(void);

/* One TCP-mode connection, as the access log reports it. */
struct access_tcp_entry {
    const char *client;   /* "ADDR:PORT" or "unix" */
    const char *listener; /* listener name */
    const char *upstream; /* server address as configured, or "-" */
    uint64_t bytes_in;    /* from the client */
    uint64_t bytes_out;   /* to the client */
    double duration_s;
};

void access_log_tcp(const struct access_tcp_entry *e);

/* Appends S to OUT as the inside of a JSON string (no quotes). Returns the
 * number of bytes written, never more than CAP. Exposed for tests. */
size_t log_json_escape(char *out, size_t cap, const char *s);

#endif
