/* balance: see balance.h. */
#include "ferry/balance.h"

int balance_rr_pick(struct balance_peer *peers, size_t n) {
    int best = -1;
    int total = 0;
    for (size_t i = 0; i < n; i++) {
        struct balance_peer *p = &peers[i];
        if (!p->eligible) continue;
        p->current += p->weight;
        total += p->weight;
        if (best < 0 || p->current > peers[best].current) best = (int)i;
    }
    if (best >= 0) peers[best].current -= total;
    return best;
}
