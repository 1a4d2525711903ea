/* http_path: a request path normalised in place; see http_path.h.
 *
 * One pass. R reads the input and W writes the output over it, and W <= R
 * throughout (decoding only shrinks, removing a segment only moves W
 * back), so nothing is overwritten before it has been read and the result
 * is never longer than the path. Between segments the output ends in '/'.
 * A segment is copied to W, decoded as it goes, then looked at: "." is
 * dropped, ".." drops itself and the segment before it, anything else is
 * kept with the '/' that followed it. Empty segments ("//") are skipped.
 *
 *   in:  /public/../secret/x
 *   out: /public/           "public" kept
 *        /                  ".." takes W back over "public/"
 *        /secret/x          the rest written where "public" was
 *
 * Decoding happens while copying, before the segment is compared, so
 * "%2e%2E" is removed as ".." is: nginx and most upstreams decode it too. */
#include "ferry/http_path.h"

#include <stdbool.h>

/* RFC 3986 unreserved: the only characters whose escapes mean the same as
 * the character itself, so the only ones decoded. */
static bool path_unreserved(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Copies the segment at P[*R, LEN), up to the next '/' or the end, to
 * P + *W, decoding escapes of unreserved characters and keeping every
 * other escape as sent. Advances both. Returns NULL or the reason for a
 * 400: a broken escape (nginx refuses it too) or an escaped NUL (a C
 * upstream would cut the path there). */
static const char *path_copy_segment(char *p, size_t len, size_t *r, size_t *w) {
    size_t i = *r, o = *w;
    while (i < len && p[i] != '/') {
        if (p[i] != '%') {
            p[o++] = p[i++];
            continue;
        }
        int hi = i + 2 < len ? util_hex_digit((unsigned char)p[i + 1]) : -1;
        int lo = hi >= 0 ? util_hex_digit((unsigned char)p[i + 2]) : -1;
        if (lo < 0) return "malformed percent-encoding in path";
        unsigned char c = (unsigned char)(hi << 4 | lo);
        if (c == 0) return "NUL (%00) in path";
        if (path_unreserved(c)) {
            p[o++] = (char)c;
            i += 3;
            continue;
        }
        for (int k = 0; k < 3; k++)
            p[o++] = p[i++];
    }
    *r = i;
    *w = o;
    return NULL;
}

const char *http_path_normalise(char *p, size_t *len) {
    size_t n = *len, r = 1, w = 1;
    if (n == 0 || p[0] != '/') return NULL; /* "*", or the empty path of http://host */
    while (r < n) {
        if (p[r] == '/') { /* an empty segment: repeated slashes are one */
            r++;
            continue;
        }
        size_t seg = w;
        const char *why = path_copy_segment(p, n, &r, &w);
        if (why) return why;
        bool last = r == n;
        r += !last; /* past the '/' that ended the segment */
        if (w - seg == 1 && p[seg] == '.') {
            w = seg;
        } else if (w - seg == 2 && p[seg] == '.' && p[seg + 1] == '.') {
            if (seg == 1) return "path climbs above /";
            w = seg - 1; /* onto the '/' before "..", then back over the segment before it */
            while (p[w - 1] != '/')
                w--;
        } else if (!last) {
            p[w++] = '/';
        }
    }
    *len = w;
    return NULL;
}
