/* tcp_client.c - bench/tcp_throughput's load: sends N bytes to HOST:PORT (an echo
 * server, direct or through ferry in tcp mode) from one thread while the main
 * thread reads the echo back and checks every byte, then prints one line:
 *
 *   bytes=N seconds=S mib_per_s=R        (R = N / 2^20 / S, one direction)
 *
 *   tcp_client HOST PORT BYTES
 *
 * Byte k of the stream is k % 251, so a lost, duplicated or reordered block
 * shows. Exit 1 on any error or mismatch. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK  (256 * 1024)
#define PERIOD 251

static unsigned char g_pat[CHUNK + PERIOD];
static int g_fd;
static uint64_t g_total;

static void *sender(void *arg) {
    uint64_t sent = 0;
    (void)arg;
    while (sent < g_total) {
        size_t n = g_total - sent < CHUNK ? (size_t)(g_total - sent) : CHUNK;
        ssize_t k = send(g_fd, g_pat + sent % PERIOD, n, MSG_NOSIGNAL);
        if (k <= 0) {
            perror("tcp_client: send");
            exit(1);
        }
        sent += (uint64_t)k;
    }
    shutdown(g_fd, SHUT_WR);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: tcp_client HOST PORT BYTES\n");
        return 2;
    }
    g_total = strtoull(argv[3], NULL, 10);
    for (size_t i = 0; i < sizeof g_pat; i++)
        g_pat[i] = (unsigned char)(i % PERIOD);

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "tcp_client: bad address %s\n", argv[1]);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (g_fd < 0 || connect(g_fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("tcp_client: connect");
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, sender, NULL);

    static unsigned char buf[CHUNK];
    uint64_t got = 0;
    for (;;) {
        ssize_t k = recv(g_fd, buf, sizeof buf, 0);
        if (k < 0) {
            perror("tcp_client: recv");
            return 1;
        }
        if (k == 0) break;
        if (memcmp(buf, g_pat + got % PERIOD, (size_t)k) != 0) {
            fprintf(stderr, "tcp_client: wrong bytes near offset %llu\n", (unsigned long long)got);
            return 1;
        }
        got += (uint64_t)k;
    }
    pthread_join(th, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    close(g_fd);
    if (got != g_total) {
        fprintf(stderr, "tcp_client: got %llu bytes back of %llu\n", (unsigned long long)got,
                (unsigned long long)g_total);
        return 1;
    }
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("bytes=%llu seconds=%.3f mib_per_s=%.1f\n", (unsigned long long)got, s,
           (double)got / 1048576.0 / s);
    return 0;
}
