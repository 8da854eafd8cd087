/* What the parts of the C layer over nats.c share (not public: see include/comet_nats.h). */
#ifndef COMET_NATS_BRIDGE_H
#define COMET_NATS_BRIDGE_H

#include "comet_nats.h"

#include <pthread.h>
#include <stdatomic.h>

#include <nats/nats.h>

struct cn_sub {
    cn_link *link;
    natsSubscription *sub;
    cn_msg_cb cb;
    void *ctx;
    atomic_bool stopped;
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    bool done;
    cn_sub *next;
};

struct cn_link {
    /* Callbacks run on nats.c's threads. cn_close sets `closing` (callbacks then do nothing) and
     * frees the link only once the connection's closed callback has run and no callback is inside
     * (`active`): the daemon's side is never called after cn_close returns. */
    atomic_bool closing;
    atomic_int active;
    pthread_mutex_t close_lock;
    pthread_cond_t close_cond;
    bool closed_seen;
    natsConnection *nc;
    jsCtx *js;
    cn_state_cb state;
    cn_ack_cb ack;
    cn_sub_error_cb sub_error;
    void *ctx;
    int64_t timeout_ms;
    pthread_mutex_t subs_lock;
    cn_sub *subs;
};

/* Writes "what: status (JetStream error N): nats.c's last error" into err. */
void cn_say(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr);
/* The configuration of a stream holding the one subject subjects[0], in memory or on disk, on
 * `replicas` servers (0 counts as 1). */
void cn_stream_config(jsStreamConfig *cfg, const char *stream, const char **subjects, bool memory, int replicas);
/* Reads the Comet-* headers of m into d (event, epoch, seq). */
void cn_parse(natsMsg *m, cn_delivery *d);

#endif
