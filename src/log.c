/* log: error log and access log.
 *
 * The error log is for operators: one line per event, "TIME [level] text",
 * on stderr. The access log is for traffic: its format is part of the
 * contract (SPEC, "Access log"). Each line is built in a stack buffer and
 * written with a single write(2), which keeps lines whole across worker
 * threads without a lock on the hot path.
 *
 * A worker loads the access log's descriptor number, formats, then writes.
 * If a reopen closed that number in between, the next socket accepted or
 * connected could get it and the line would go into a client's or an
 * upstream's connection. So the access log keeps one number for the life of
 * the process: a reopen or a reload opens the new file and dup3()s it over
 * that number (atomically: the number always refers to one log file or the
 * other), then closes the temporary. Turning the log off puts /dev/null
 * there. The number is closed only at exit, after the workers have ended. */
#include "ferry/log.h"

#include <assert.h>
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

static _Atomic int access_fd = -1;   /* where lines go: access_slot, or -1 when off */
static int access_slot = -1;         /* the log's one descriptor number; main thread only */
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

/* Makes FD (newly opened, or -1 for off) the access log; FD is taken in
 * either case. See the top of the file for why the number never changes
 * once there is one. Returns 0 or a negative errno (the old log stays). */
static int access_install(int fd) {
    if (access_slot < 0) { /* the first log: its number becomes the slot */
        access_slot = fd;
        atomic_store(&access_fd, fd);
        return 0;
    }
    bool off = fd < 0;
    if (off) {
        /* Lines stop now; one already past the check goes to /dev/null.
         * Without /dev/null the old file stays behind the number: as safe. */
        atomic_store(&access_fd, -1);
        fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (fd < 0) return 0;
    }
    int err = dup3(fd, access_slot, O_CLOEXEC) < 0 ? -errno : 0;
    close(fd);
    if (off) return 0;
    if (err == 0) atomic_store(&access_fd, access_slot);
    return err;
}

int access_log_open(enum access_log_target target, const char *path,
                    enum access_log_format format) {
    int fd = access_open_fd(target, path);
    if (fd < 0 && target != ACCESS_LOG_OFF) return -errno;
    int err = access_install(fd);
    if (err < 0) return err;
    access_target = target;
    if (path) snprintf(access_path, sizeof(access_path), "%s", path);
    atomic_store(&access_format, (int)format);
    return 0;
}

int access_log_check(enum access_log_target target, const char *path) {
    int fd = access_open_fd(target, path);
    if (fd < 0) return target == ACCESS_LOG_OFF ? 0 : -errno;
    close(fd);
    return 0;
}

int access_log_reopen(void) {
    if (access_target != ACCESS_LOG_FILE) return 0;
    int fd = access_open_fd(access_target, access_path);
    if (fd < 0) return -errno;
    return access_install(fd);
}

/* At exit only: no worker writes any more. */
void access_log_close(void) {
    atomic_store(&access_fd, -1);
    if (access_slot >= 0) close(access_slot);
    access_slot = -1;
}

size_t log_text_escape(char *out, size_t cap, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        bool plain = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
        size_t k = plain ? 1 : 4;
        if (n + k > cap) break; /* never half an escape */
        if (plain) {
            out[n++] = (char)ch;
            continue;
        }
        out[n++] = '\\';
        out[n++] = 'x';
        out[n++] = hex[ch >> 4];
        out[n++] = hex[ch & 15];
    }
    return n;
}

/* The length of the valid UTF-8 sequence at S (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 if there is none.
 * S is NUL-terminated, so reading on while bytes are continuations stays
 * inside it. */
static size_t utf8_valid_len(const unsigned char *s) {
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0; /* overlong */
        if (c == 0xed) hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90; /* overlong */
        if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

/* Bytes that are not part of valid UTF-8 become \u00HH, the code point of
 * the same number (U+0080..U+00FF), so the line stays valid UTF-8 and valid
 * JSON whatever a client sent. Unlike U+FFFD this keeps the byte's value;
 * the price is that a lone 0xFF reads back like a well-formed U+00FF (the
 * text format keeps the two apart). */
size_t log_json_escape(char *out, size_t cap, const char *s) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (*p) {
        char esc[6];
        size_t k = 0, utf8 = *p >= 0x80 ? utf8_valid_len(p) : 0;
        if (utf8 > 0) {
            if (n + utf8 > cap) break; /* never half a character */
            memcpy(out + n, p, utf8);
            n += utf8;
            p += utf8;
            continue;
        }
        if (*p == '"' || *p == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)*p;
        } else if (*p < 0x20 || *p >= 0x7f) {
            memcpy(esc, "\\u00", 4);
            k = 4;
            esc[k++] = hex[*p >> 4];
            esc[k++] = hex[*p & 15];
        } else {
            esc[k++] = (char)*p;
        }
        if (n + k > cap) break; /* never half an escape */
        memcpy(out + n, esc, k);
        n += k;
        p++;
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

bool access_log_enabled(void) {
    return atomic_load(&access_fd) >= 0;
}

/* The budgets of an HTTP line: the most bytes each field may take once
 * escaped. The target, referer and user agent come from the client, cut to
 * 511, 255 and 255 bytes by conn_http.c, and grow at most 4 times (text,
 * \xHH) or 6 times (JSON, \u00HH) when escaped; everything else is ferry's
 * own (a time, names and addresses from the config, a method token, a
 * request id of at most 200 visible bytes) and fits in FIELD_SHORT. A field
 * past its budget is cut at a whole character or escape, and the line holds
 * the sum of the budgets, so the line itself is never cut: a JSON line
 * stays valid JSON whatever a client sends. */
#define FIELD_SHORT 512
#define FIELD_NUMBER 64 /* ,"status":200,"bytes":N and the like */
#define FIELD_KEY 16    /* ,"user_agent":" and the like */
#define TARGET_ESCAPED (6 * 512)
#define HEADER_ESCAPED (6 * 256)
/* JSON, the longer of the two: 10 string fields, 3 runs of numbers and 3
 * more for a tunnel, braces and the newline. The text line needs less (see
 * access_http_text). */
#define ACCESS_LINE_SIZE                                                                           \
    (10 * (FIELD_KEY + 1) + TARGET_ESCAPED + 2 * HEADER_ESCAPED + 7 * FIELD_SHORT +              \
     6 * FIELD_NUMBER + 2 + 1)

/* An access log line being built; see the budgets above. */
struct line {
    char buf[ACCESS_LINE_SIZE];
    size_t len;
};

/* Room for a field of BUDGET bytes: all of it, by the sizing above. One
 * byte stays free for the newline. */
static size_t line_room(const struct line *l, size_t budget) {
    size_t left = sizeof(l->buf) - 1 - l->len;
    assert(budget <= left); /* the budgets add up to the buffer */
    return budget < left ? budget : left;
}

static void line_fmt(struct line *l, size_t budget, const char *fmt, ...) FERRY_PRINTF(3, 4);

static void line_fmt(struct line *l, size_t budget, const char *fmt, ...) {
    size_t room = line_room(l, budget);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(l->buf + l->len, room + 1, fmt, ap); /* the NUL fits: see line_room */
    va_end(ap);
    if (k > 0) l->len += (size_t)k < room ? (size_t)k : room;
}

static void line_text(struct line *l, const char *s, size_t budget) {
    l->len += log_text_escape(l->buf + l->len, line_room(l, budget), s);
}

/* "KEY":"VALUE", after a comma unless it is the object's first field. */
static void line_json(struct line *l, const char *key, const char *val, size_t budget) {
    bool first = l->buf[l->len - 1] == '{';
    line_fmt(l, FIELD_KEY, "%s\"%s\":\"", first ? "" : ",", key);
    l->len += log_json_escape(l->buf + l->len, line_room(l, budget), val);
    line_fmt(l, 1, "\"");
}

static void access_http_json(struct line *l, const struct access_http_entry *e) {
    char when[64];
    access_time(when, sizeof(when), true);
    line_fmt(l, 1, "{");
    line_json(l, "time", when, FIELD_SHORT);
    line_json(l, "client", e->client, FIELD_SHORT);
    line_json(l, "method", e->method, FIELD_SHORT);
    line_json(l, "target", e->target, TARGET_ESCAPED);
    line_json(l, "proto", e->proto, FIELD_SHORT);
    line_fmt(l, FIELD_NUMBER, ",\"status\":%d,\"bytes\":%llu", e->status,
             (unsigned long long)e->bytes);
    line_json(l, "referer", e->referer, HEADER_ESCAPED);
    line_json(l, "user_agent", e->user_agent, HEADER_ESCAPED);
    line_json(l, "route", e->route, FIELD_SHORT);
    line_json(l, "upstream", e->upstream, FIELD_SHORT);
    line_fmt(l, FIELD_NUMBER, ",\"rt\":%.3f", e->rt);
    if (e->urt < 0)
        line_fmt(l, FIELD_NUMBER, ",\"urt\":null");
    else
        line_fmt(l, FIELD_NUMBER, ",\"urt\":%.3f", e->urt);
    line_json(l, "rid", e->rid, FIELD_SHORT);
    if (e->tunnel)
        line_fmt(l, 3 * FIELD_NUMBER, ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration\":%.3f",
                 (unsigned long long)e->tunnel_in, (unsigned long long)e->tunnel_out,
                 e->duration_s);
    line_fmt(l, 1, "}");
}

/* Only the client's fields are escaped: the rest is ferry's own and has
 * neither spaces nor quotes. Its budgets add up to less than the JSON's. */
static void access_http_text(struct line *l, const struct access_http_entry *e) {
    char when[64];
    access_time(when, sizeof(when), false);
    line_fmt(l, 2 * FIELD_SHORT, "%s - - [%s] \"%s ", e->client, when, e->method);
    line_text(l, e->target, TARGET_ESCAPED);
    line_fmt(l, FIELD_SHORT + FIELD_NUMBER, " %s\" %d %llu \"", e->proto, e->status,
             (unsigned long long)e->bytes);
    line_text(l, e->referer, HEADER_ESCAPED);
    line_fmt(l, 3, "\" \"");
    line_text(l, e->user_agent, HEADER_ESCAPED);
    line_fmt(l, 2 * FIELD_SHORT, "\" route=%s upstream=%s", e->route, e->upstream);
    if (e->urt < 0)
        line_fmt(l, FIELD_NUMBER, " rt=%.3f urt=-", e->rt);
    else
        line_fmt(l, FIELD_NUMBER, " rt=%.3f urt=%.3f", e->rt, e->urt);
    line_fmt(l, FIELD_SHORT, " rid=%s", e->rid);
    if (e->tunnel)
        line_fmt(l, 3 * FIELD_NUMBER, " in=%llu out=%llu duration=%.3f",
                 (unsigned long long)e->tunnel_in, (unsigned long long)e->tunnel_out,
                 e->duration_s);
}

void access_log_http(const struct access_http_entry *e) {
    int fd = atomic_load(&access_fd);
    if (fd < 0) return;
    struct line l;
    l.len = 0;
    if (atomic_load(&access_format) == ACCESS_LOG_JSON)
        access_http_json(&l, e);
    else
        access_http_text(&l, e);
    l.buf[l.len++] = '\n';
    write_all(fd, l.buf, l.len);
}

/* A TCP line has no client-controlled field; it shares the builder (and
 * its budgets) so that its JSON is escaped and cut the same way. */
void access_log_tcp(const struct access_tcp_entry *e) {
    int fd = atomic_load(&access_fd);
    if (fd < 0) return;
    struct line l;
    char when[64];
    l.len = 0;
    if (atomic_load(&access_format) == ACCESS_LOG_JSON) {
        access_time(when, sizeof(when), true);
        line_fmt(&l, 1, "{");
        line_json(&l, "time", when, FIELD_SHORT);
        line_json(&l, "client", e->client, FIELD_SHORT);
        line_json(&l, "listener", e->listener, FIELD_SHORT);
        if (e->route) line_json(&l, "route", e->route, FIELD_SHORT);
        line_json(&l, "upstream", e->upstream, FIELD_SHORT);
        line_fmt(&l, FIELD_NUMBER, ",\"bytes_in\":%llu,\"bytes_out\":%llu",
                 (unsigned long long)e->bytes_in, (unsigned long long)e->bytes_out);
        line_fmt(&l, FIELD_NUMBER, ",\"duration\":%.3f}", e->duration_s);
    } else {
        access_time(when, sizeof(when), false);
        line_fmt(&l, 3 * FIELD_SHORT, "%s - - [%s] \"TCP\" listener=%s", e->client, when,
                 e->listener);
        if (e->route) line_fmt(&l, FIELD_SHORT, " route=%s", e->route);
        line_fmt(&l, FIELD_SHORT, " upstream=%s", e->upstream);
        line_fmt(&l, 2 * FIELD_NUMBER, " in=%llu out=%llu duration=%.3f",
                 (unsigned long long)e->bytes_in, (unsigned long long)e->bytes_out,
                 e->duration_s);
    }
    l.buf[l.len++] = '\n';
    write_all(fd, l.buf, l.len);
}
