/* transport_h2: what the HTTP/2 streams of a worker share. Each stream of
 * an HTTP/2 connection is served by a conn of its own speaking HTTP/1.1
 * (conn_http.c, unchanged) through a transport whose bytes are the
 * stream's: see src/h2_internal.h. */
#ifndef FERRY_TRANSPORT_H2_H
#define FERRY_TRANSPORT_H2_H

#include <uv.h>

#include "ferry/util.h"

/* Deliveries to stream readers are deferred to an idle callback, as
 * libuv's reads are, so that no reader is called back from inside its
 * own read_start. */
struct h2_worker {
    uv_idle_t idle;
    struct list_node deferred; /* h2_stream.deferred: streams with something to deliver */
    struct list_node sending;  /* h2_session.sending: sessions with frames to write */
};

/* Why an HTTP/2 connection was ended with GOAWAY ENHANCE_YOUR_CALM: the
 * `kind` of ferry_h2_abuse_total. */
enum h2_abuse {
    H2_ABUSE_RAPID_RESET,  /* more resets than completed streams (CVE-2023-44487) */
    H2_ABUSE_CONTINUATION, /* a header block in too many CONTINUATIONs (CVE-2024-27316) */
    H2_ABUSE_SETTINGS,     /* SETTINGS in bulk */
    H2_ABUSE_PING,         /* PING in bulk */
    H2_ABUSE_PRIORITY,     /* PRIORITY in bulk */
    H2_ABUSE_EMPTY_DATA,   /* empty DATA frames in bulk */
    H2_ABUSE_ACK_BACKLOG,  /* answers piling up unread (nghttp2's own limit) */
    H2_ABUSE_KINDS
};
extern const char *const h2_abuse_names[H2_ABUSE_KINDS];

void h2_worker_init(struct h2_worker *hw, uv_loop_t *loop);
/* Closes the idle handle; the loop must then run once more. */
void h2_worker_close(struct h2_worker *hw);

#endif
