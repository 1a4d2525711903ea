/* ws.c - the WebSocket echo (RFC 6455) after a 101 from http.c.
 *
 * Each complete client frame is unmasked in place and echoed unmasked with
 * the same FIN bit and opcode, so a fragmented message comes back fragmented
 * the same way. Ping gets pong, close gets the same close back and ends the
 * connection; protocol errors get close 1002, oversized frames close 1009. */
#include "upstream.h"

#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum { WS_CONT = 0, WS_TEXT = 1, WS_BINARY = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

void ws_respond_upgrade(struct conn *c, const char *key, size_t key_len) {
    struct sha1 s;
    uint8_t digest[SHA1_LEN];
    char accept[32];
    sha1_init(&s);
    sha1_update(&s, key, key_len);
    sha1_update(&s, WS_GUID, sizeof WS_GUID - 1);
    sha1_final(&s, digest);
    size_t n = base64_encode(digest, sizeof digest, accept);

    struct obuf *o = &c->out[c->cur];
    ob_lit(o, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: ");
    ob_add(o, accept, n);
    ob_lit(o, "\r\nX-Upstream-Name: ");
    ob_add(o, g_up.name, g_up.name_len);
    ob_lit(o, "\r\n\r\n");
}

/* Appends one unmasked frame. */
static void ws_frame(struct conn *c, unsigned first_byte, const char *payload, uint64_t n) {
    struct obuf *o = &c->out[c->cur];
    uint8_t h[10];
    size_t hl;
    h[0] = (uint8_t)first_byte;
    if (n < 126) {
        h[1] = (uint8_t)n;
        hl = 2;
    } else if (n <= 0xffff) {
        h[1] = 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(n >> (56 - 8 * i));
        hl = 10;
    }
    ob_reserve(o, hl + n);
    ob_add(o, h, hl);
    ob_add(o, payload, (size_t)n);
}

/* Sends close with `code` and ends the connection once it is written. */
static void ws_fail(struct conn *c, unsigned code) {
    char p[2] = {(char)(code >> 8), (char)(code & 0xff)};
    ws_frame(c, 0x80 | WS_CLOSE, p, 2);
    c->close_after = 1;
}

/* Echoes the complete frames in [data, data+len); returns the bytes used.
 * Stops early at an incomplete frame, a close, or a full output buffer. */
size_t ws_process(struct conn *c, char *data, size_t len) {
    uint8_t *u = (uint8_t *)data;
    size_t off = 0;
    while (len - off >= 2 && !c->close_after && c->out[c->cur].len < UPSTREAM_OUT_HIGH) {
        const uint8_t *f = u + off;
        unsigned fin = f[0] & 0x80, op = f[0] & 0x0f;
        uint64_t plen = f[1] & 0x7f;
        size_t hl = 2;
        if (plen == 126) {
            if (len - off < 4) break;
            plen = (uint64_t)f[2] << 8 | f[3];
            hl = 4;
        } else if (plen == 127) {
            if (len - off < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | f[2 + i];
            hl = 10;
        }
        int control = op >= 8;
        if ((f[0] & 0x70) || !(f[1] & 0x80) || (op > 2 && op < 8) || op > 10 ||
            (control && (!fin || plen > 125))) {
            ws_fail(c, 1002);
            break;
        }
        if (plen > UPSTREAM_WS_MAX_PAYLOAD) {
            ws_fail(c, 1009);
            break;
        }
        hl += 4;
        if (len - off < hl + plen) break;
        const uint8_t *mask = u + off + hl - 4;
        char *payload = data + off + hl;
        for (size_t i = 0; i < plen; i++)
            payload[i] ^= (char)mask[i & 3];
        off += hl + (size_t)plen;
        switch (op) {
        case WS_PING: ws_frame(c, 0x80 | WS_PONG, payload, plen); break;
        case WS_PONG: break;
        case WS_CLOSE:
            if (plen == 1) {
                ws_fail(c, 1002);
            } else {
                ws_frame(c, 0x80 | WS_CLOSE, payload, plen);
                c->close_after = 1;
            }
            break;
        default: ws_frame(c, fin | op, payload, plen); break;
        }
    }
    return off;
}
