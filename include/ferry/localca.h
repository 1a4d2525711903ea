/* localca: a certificate authority of ferry's own, for `tls_auto = internal`.
 *
 * Local development wants https://app.localhost that a browser trusts with
 * no certificate handling: ferry makes one CA (EC P-256, ten years) in
 * state_dir the first time it is needed, keeps it there (files 0600, the
 * directory 0700) and reuses it on every later start, so the user trusts it
 * once. Leaf certificates are issued at the handshake, for the one name the
 * client asked for, and live a day; one older than two thirds of that is
 * issued again at its next handshake. Issued leaves are kept in memory only,
 * in a cache of at most LOCALCA_CACHE_MAX names (least recently used goes).
 *
 * Which names may have a certificate is the caller's decision (tls.c: the
 * names a route on the listener serves); this module only checks that a name
 * is a syntactically valid DNS name.
 *
 * localca_open() runs on the main thread (config load); localca_leaf() on
 * any worker, concurrently. One struct localca per state_dir is shared by
 * every config generation (reference counted), so a reload neither makes a
 * new CA nor forgets the issued leaves. */
#ifndef FERRY_LOCALCA_H
#define FERRY_LOCALCA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "ferry/util.h"

typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;

#define LOCALCA_CACHE_MAX       1024
#define LOCALCA_LEAF_LIFETIME_S (24 * 3600)
/* notBefore is backdated this much: a client whose clock is a little behind
 * must not see a certificate from the future. */
#define LOCALCA_BACKDATE_S    3600
#define LOCALCA_CA_LIFETIME_S (10ll * 365 * 86400)

struct localca;

/* Whether DIR can hold the CA: it exists and is a writable directory, or it
 * can be created (its nearest existing parent is writable). Creates nothing.
 * 0, or -1 with a message in ERR. For `ferry -t`. */
int localca_check_dir(const char *dir, char *err, size_t len) FERRY_MUSTCHECK;

/* The CA of DIR, made there if missing (DIR created 0700 if needed). When
 * stored files are unreadable or do not form a CA with its key, they are
 * moved aside (".bad" appended), a warning is logged and a new CA is made.
 * *CREATED tells whether a new CA was made (the caller prints how to trust
 * it). The same DIR opened twice gives the same object with one more
 * reference. NULL with a message in ERR. */
struct localca *localca_open(const char *dir, bool *created, char *err, size_t len) FERRY_MUSTCHECK;
/* Takes one more reference. */
void localca_ref(struct localca *ca);
/* Drops one reference (CA may be NULL); the last frees the CA and its cache. Any thread. */
void localca_release(struct localca *ca);

/* Where the CA certificate is (a PEM file inside state_dir). */
const char *localca_cert_path(const struct localca *ca);
/* The CA certificate (owned by CA), and when it expires. */
X509 *localca_cert(const struct localca *ca);
time_t localca_not_after(const struct localca *ca);

/* A certificate for NAME (a DNS name, any case, no trailing dot) valid at
 * NOW: from the cache, or issued now when absent or past two thirds of its
 * life. On success 0 and one new reference each in *CERT and *KEY (the
 * caller frees them); -1 when NAME is not a valid DNS name or OpenSSL
 * failed. Thread-safe. */
int localca_leaf(struct localca *ca, const char *name, time_t now, X509 **cert,
                 EVP_PKEY **key) FERRY_MUSTCHECK;

/* Leaves in the cache (at most LOCALCA_CACHE_MAX); leaves issued so far. */
size_t localca_cached(struct localca *ca);
unsigned long long localca_issued(struct localca *ca);

/* How to trust the CA whose certificate is at CERT_PATH: Debian and Ubuntu,
 * macOS, Windows, Firefox, curl. */
void localca_print_trust(FILE *out, const char *cert_path);

/* Whether NAME is a DNS name we would put in a certificate: labels of
 * letters, digits and '-', not starting or ending with '-', 1..63 bytes
 * each, 253 in all. */
bool localca_name_ok(const char *name);

#endif
