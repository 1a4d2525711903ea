/* log: error log and access log.
 *
 * The error log is for operators: one line per event, "TIME [level] text",
 * on stderr. The access log is for traffic: its format is part of the
 * contract (SPEC, "Access log"). Each line is built in a stack buffer and
 * written with a single write(2), which keeps lines whole across worker
 * threads without a lock on the hot path. The access log descriptor is
 * swapped atomically on reopen; the old one is closed only after the swap,
 * so a writer racing a reopen writes to one file or the other, never to a
 * closed descriptor that has been reused (the window is one write call). */
#include "ferry/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level_current = LOG_INFO;

static _Atomic int access_fd = -1;
static _Atomic int access_format = ACCESS_LOG_TEXT;
static char access_path[4096];
static enum access_log_target access_target = ACCESS_LOG_OFF;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level) {
    atomic_store(&log_level_current, (int)level);
}

bool log_enabled(enum log_level level) {
    return (int)level <= atomic_load(&log_level_current);
}

static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* a log that cannot be written must not stop the proxy */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_msg(enum log_level level, const char *fmt, ...) {
    if (!log_enabled(level)) return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) len = sizeof(line) - 2;
    line[len++] = '\n';
    write_all(STDERR_FILENO, line, len);
}

static int access_open_fd(enum access_log_target target, const char *path) {
    switch (target) {
    case ACCESS_LOG_OFF: return -1;
    case ACCESS_LOG_STDOUT: return dup(STDOUT_FILENO);
    case ACCESS_LOG_STDERR: return dup(STDERR_FILENO);
    case ACCESS_LOG_FILE: return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    }
    return -1;
}

static void access_swap(int fd) {
    int old = atomic_exchange(&access_fd, fd);
    if (old >= 0) close(old);
}

int access_log_open(enum access_log_target target, const char *path,
                    enum access_log_format format) {
    int fd = access_open_fd(target, path);
    if (fd < 0 && target != ACCESS_LOG_OFF) return -errno;
    access_target = target;
    if (path) snprintf(access_path, sizeof(access_path), "%s", path);
    atomic_store(&access_format, (int)format);
    access_swap(fd);
    return 0;
}

int access_log_reopen(void) {
    if (access_target != ACCESS_LOG_FILE) return 0;
    int fd = access_open_fd(access_target, access_path);
    if (fd < 0) return -errno;
    access_swap(fd);
    return 0;
}

void access_log_close(void) {
    access_swap(-1);
}

size_t log_json_escape(char *out, size_t cap, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[7];
        size_t k = 0;
        if (ch == '"' || ch == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'u';
            esc[k++] = '0';
            esc[k++] = '0';
            esc[k++] = hex[ch >> 4];
            esc[k++] = hex[ch & 15];
        } else {
            esc[k++] = (char)ch;
        }
        if (n + k > cap) break;
        memcpy(out + n, esc, k);
        n += k;
    }
    return n;
}

/* "[26/Nov/2026:19:43:20 +0000]" without the brackets, common log format. */
static void access_time(char *out, size_t cap, bool iso) {
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    if (iso)
        snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000));
    else
        snprintf(out, cap, "%02d/%s/%04d:%02d:%02d:%02d +0000", tm.tm_mday, months[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void access_log_tcp(const struct access_tcp_entry *e) {
    int fd = atomic_load(&access_fd);
    if (fd < 0) return;
    char line[1024], when[64];
    int n;
    if (atomic_load(&access_format) == ACCESS_LOG_JSON) {
        char client[256], listener[256], upstream[512];
        client[log_json_escape(client, sizeof(client) - 1, e->client)] = '\0';
        listener[log_json_escape(listener, sizeof(listener) - 1, e->listener)] = '\0';
        upstream[log_json_escape(upstream, sizeof(upstream) - 1, e->upstream)] = '\0';
        access_time(when, sizeof(when), true);
        n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"client\":\"%s\",\"listener\":\"%s\",\"upstream\":\"%s\","
                     "\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration\":%.3f}\n",
                     when, client, listener, upstream, (unsigned long long)e->bytes_in,
                     (unsigned long long)e->bytes_out, e->duration_s);
    } else {
        access_time(when, sizeof(when), false);
        n = snprintf(line, sizeof(line),
                     "%s - - [%s] \"TCP\" listener=%s upstream=%s in=%llu out=%llu duration=%.3f\n",
                     e->client, when, e->listener, e->upstream, (unsigned long long)e->bytes_in,
                     (unsigned long long)e->bytes_out, e->duration_s);
    }
    if (n < 0) return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    if (line[len - 1] != '\n') line[len - 1] = '\n';
    write_all(fd, line, len);
}

bool access_log_enabled(void) {
    return atomic_load(&access_fd) >= 0;
}

static void access_json_field(char *out, size_t cap, size_t *n, const char *key, const char *val,
                              bool last) {
    if (*n >= cap) return;
    int k = snprintf(out + *n, cap - *n, "\"%s\":\"", key);
    if (k < 0 || (size_t)k >= cap - *n) {
        *n = cap;
        return;
    }
    *n += (size_t)k;
    *n += log_json_escape(out + *n, cap - *n, val);
    k = snprintf(out + *n, cap - *n, last ? "\"" : "\",");
    *n = k < 0 ? cap : *n + (size_t)k;
}

void access_log_http(const struct access_http_entry *e) {
    int fd = atomic_load(&access_fd);
    if (fd < 0) return;
    char line[4096], when[64], urt[32];
    size_t n = 0;
    if (e->urt < 0)
        snprintf(urt, sizeof(urt), "-");
    else
        snprintf(urt, sizeof(urt), "%.3f", e->urt);
    if (atomic_load(&access_format) == ACCESS_LOG_JSON) {
        access_time(when, sizeof(when), true);
        n = (size_t)snprintf(line, sizeof(line), "{");
        access_json_field(line, sizeof(line) - 2, &n, "time", when, false);
        access_json_field(line, sizeof(line) - 2, &n, "client", e->client, false);
        access_json_field(line, sizeof(line) - 2, &n, "method", e->method, false);
        access_json_field(line, sizeof(line) - 2, &n, "target", e->target, false);
        access_json_field(line, sizeof(line) - 2, &n, "proto", e->proto, false);
        if (n < sizeof(line) - 2) {
            int k = snprintf(line + n, sizeof(line) - 2 - n, "\"status\":%d,\"bytes\":%llu,",
                             e->status, (unsigned long long)e->bytes);
            n = k < 0 ? sizeof(line) - 2 : n + (size_t)k;
        }
        access_json_field(line, sizeof(line) - 2, &n, "referer", e->referer, false);
        access_json_field(line, sizeof(line) - 2, &n, "user_agent", e->user_agent, false);
        access_json_field(line, sizeof(line) - 2, &n, "route", e->route, false);
        access_json_field(line, sizeof(line) - 2, &n, "upstream", e->upstream, false);
        if (n < sizeof(line) - 2) {
            int k = e->urt < 0 ? snprintf(line + n, sizeof(line) - 2 - n,
                                          "\"rt\":%.3f,\"urt\":null,", e->rt)
                               : snprintf(line + n, sizeof(line) - 2 - n,
                                          "\"rt\":%.3f,\"urt\":%.3f,", e->rt, e->urt);
            n = k < 0 ? sizeof(line) - 2 : n + (size_t)k;
        }
        access_json_field(line, sizeof(line) - 2, &n, "rid", e->rid, true);
        if (n > sizeof(line) - 2) n = sizeof(line) - 2;
        line[n++] = '}';
        line[n++] = '\n';
    } else {
        access_time(when, sizeof(when), false);
        int k = snprintf(line, sizeof(line),
                         "%s - - [%s] \"%s %s %s\" %d %llu \"%s\" \"%s\" route=%s upstream=%s "
                         "rt=%.3f urt=%s rid=%s\n",
                         e->client, when, e->method, e->target, e->proto, e->status,
                         (unsigned long long)e->bytes, e->referer, e->user_agent, e->route,
                         e->upstream, e->rt, urt, e->rid);
        if (k < 0) return;
        n = (size_t)k < sizeof(line) ? (size_t)k : sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    write_all(fd, line, n);
}
