/* healthcheck: GET /healthz on the admin address; see healthcheck.h. */
#include "ferry/healthcheck.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "ferry/config.h"

/* The host to ask: loopback for a wildcard bind. */
static const char *healthcheck_host(const char *bind) {
    if (!bind[0] || strcmp(bind, "0.0.0.0") == 0) return "127.0.0.1";
    if (strcmp(bind, "::") == 0) return "::1";
    return bind;
}

/* One request on a blocking socket with send and receive timeouts; returns
 * the status code, or -1 with WHY set. */
static int healthcheck_get(const struct addrinfo *ai, const char **why) {
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return *why = "socket", -1;
    struct timeval tv = {.tv_sec = HEALTHCHECK_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    static const char req[] = "GET /healthz HTTP/1.0\r\nHost: healthcheck\r\n\r\n";
    char buf[64] = "";
    int code = -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        *why = "connect refused or timed out";
    } else if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1) {
        *why = "send failed";
    } else {
        size_t len = 0;
        ssize_t n;
        while (len < sizeof(buf) - 1 && (n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
            len += (size_t)n;
        buf[len] = '\0';
        if (sscanf(buf, "HTTP/1.%*1d %3d", &code) != 1) code = -1, *why = "no HTTP status";
    }
    close(fd);
    return code;
}

int healthcheck_run(const struct config *cfg, FILE *err) {
    if (!cfg->global.has_admin) {
        fprintf(err, "ferry: --healthcheck needs `admin =` in [global]\n");
        return 1;
    }
    const struct config_addr *a = &cfg->global.admin;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(healthcheck_host(a->host), port, &hints, &res);
    if (rc != 0) {
        fprintf(err, "ferry: --healthcheck: %s: %s\n", a->text, gai_strerror(rc));
        return 1;
    }
    const char *why = "";
    int code = healthcheck_get(res, &why);
    freeaddrinfo(res);
    if (code == 200) return 0;
    if (code > 0)
        fprintf(err, "ferry: --healthcheck: %s/healthz answered %d\n", a->text, code);
    else
        fprintf(err, "ferry: --healthcheck: %s: %s\n", a->text, why);
    return 1;
}
