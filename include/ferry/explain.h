/* explain: `ferry --explain 'METHOD URL'`, which listener, route and upstream
 * a request would take under a config, and why.
 *
 * For each http listener the request could reach it prints the route that
 * wins with the rule that decided it, the upstream and its servers, the
 * target the upstream would see, and every other route that also matched
 * with the reason it lost, then the routes that did not match and why. The
 * decision itself is route_match's (through route_explain), so the
 * explanation cannot disagree with what the proxy does. */
#ifndef FERRY_EXPLAIN_H
#define FERRY_EXPLAIN_H

#include <stdio.h>

struct config;

/* REQUEST is "METHOD URL", URL either absolute (http://HOST[:PORT]/PATH?QUERY,
 * port 80 by default) or a bare /PATH (no host; every http listener is
 * considered). Listeners considered: the http listeners bound to the URL's
 * port, or every http listener when none is (said in the output). The path
 * is normalised as the proxy does before routing. Writes the explanation to
 * OUT. Returns 0 when at least one considered listener sends the request to
 * an upstream (a route or its default `upstream`), 1 when none does (a path
 * the proxy refuses with 400 included), 2 when REQUEST cannot be parsed
 * (bad usage; a message goes to ERR).
 *
 * REQUEST may also be "SNI NAME[:PORT]": the same for a TLS connection whose
 * ClientHello names NAME, on the tcp listeners with sni routes (bound to
 * PORT, or all of them when none is or there is no port).
 *
 * TLS (may be NULL): the certificates of CFG, to say which one a TLS
 * listener would present for the request's host. */
struct tls_set;
int explain_run(const struct config *cfg, const struct tls_set *tls, const char *request,
                FILE *out, FILE *err);

#endif
