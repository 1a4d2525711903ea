/* A pebble (Debian's ACME test server) for unit tests, included by the
 * tests that need one: a temporary directory, a certificate for
 * "localhost" from a local CA made there (pebble's HTTPS), pebble started
 * on free ports with determinism switched on (no random VA sleeps, no
 * random nonce rejection), and stopped at the end. pebble_start() returns
 * false when pebble is not installed: the test then skips. */
#ifndef FERRY_PEBBLE_FIXTURE_H
#define FERRY_PEBBLE_FIXTURE_H

#include <netinet/in.h>
#include <openssl/pem.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry/localca.h"

#define PEBBLE_BIN "/usr/bin/pebble"

struct pebble {
    char dir[64];       /* the temporary directory */
    char ca[128];       /* the CA pebble's HTTPS certificate comes from */
    char url[128];      /* https://localhost:PORT/dir */
    int port, http_port, tls_port;
    pid_t pid;
};

static int pebble_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &n);
    close(fd);
    return ntohs(a.sin_port);
}

static bool pebble_listening(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static void pebble_write_pem(const char *path, X509 *cert, EVP_PKEY *key) {
    FILE *f = fopen(path, "w");
    if (cert) PEM_write_X509(f, cert);
    if (key) PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

/* Starts pebble with EXTRA_JSON (more members of its "pebble" object, may
 * be ""); false when pebble is missing or did not come up within 10s. */
static bool pebble_start(struct pebble *p, const char *extra_json) {
    if (access(PEBBLE_BIN, X_OK) != 0) return false;
    snprintf(p->dir, sizeof(p->dir), "/tmp/ferry-pebble-XXXXXX");
    if (!mkdtemp(p->dir)) return false;
    char state[96], cert[128], key[128], cfg[128];
    snprintf(state, sizeof(state), "%s/ca", p->dir);
    bool created;
    char err[256];
    struct localca *ca = localca_open(state, &created, err, sizeof(err));
    if (!ca) return false;
    X509 *x;
    EVP_PKEY *k;
    if (localca_leaf(ca, "localhost", time(NULL), &x, &k) < 0) return false;
    snprintf(p->ca, sizeof(p->ca), "%s", localca_cert_path(ca));
    snprintf(cert, sizeof(cert), "%s/cert.pem", p->dir);
    snprintf(key, sizeof(key), "%s/key.pem", p->dir);
    pebble_write_pem(cert, x, NULL);
    pebble_write_pem(key, NULL, k);
    X509_free(x);
    EVP_PKEY_free(k);
    localca_release(ca);
    p->port = pebble_free_port();
    p->http_port = pebble_free_port();
    p->tls_port = pebble_free_port();
    snprintf(p->url, sizeof(p->url), "https://localhost:%d/dir", p->port);
    snprintf(cfg, sizeof(cfg), "%s/pebble.json", p->dir);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "{\"pebble\": {\"listenAddress\": \"127.0.0.1:%d\", \"managementListenAddress\": "
            "\"127.0.0.1:%d\", \"certificate\": \"%s\", \"privateKey\": \"%s\", \"httpPort\": %d, "
            "\"tlsPort\": %d, \"ocspResponderURL\": \"\", \"externalAccountBindingRequired\": "
            "false%s%s}}\n",
            p->port, pebble_free_port(), cert, key, p->http_port, p->tls_port,
            extra_json[0] ? ", " : "", extra_json);
    fclose(f);
    p->pid = fork();
    if (p->pid == 0) {
        char log[128];
        snprintf(log, sizeof(log), "%s/pebble.log", p->dir);
        freopen(log, "w", stdout);
        freopen(log, "a", stderr);
        setenv("PEBBLE_VA_NOSLEEP", "1", 1);
        setenv("PEBBLE_WFE_NONCEREJECT", "0", 1);
        execl(PEBBLE_BIN, "pebble", "-config", cfg, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* 10s, in 20ms steps */
        if (pebble_listening(p->port)) return true;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void pebble_stop(struct pebble *p) {
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
    if (p->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", p->dir);
    }
}

#endif
