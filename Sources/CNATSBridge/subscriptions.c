/* Subscriptions: an ephemeral push consumer per import, stopped without a callback left behind. */
#include "bridge.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    (void)nc;
    (void)sub;
    cn_sub *s = closure;
    if (!atomic_load(&s->stopped)) {
        cn_delivery d;
        memset(&d, 0, sizeof d);
        cn_parse(msg, &d);
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, msg) == NATS_OK && meta) {
            d.stream_seq = meta->Sequence.Stream;
            d.pending = meta->NumPending;
            jsMsgMetaData_Destroy(meta);
        }
        d.data = natsMsg_GetData(msg);
        d.len = natsMsg_GetDataLength(msg);
        s->cb(s->ctx, &d);
    }
    natsMsg_Destroy(msg);
}

static void on_complete(void *closure) {
    cn_sub *s = closure;
    pthread_mutex_lock(&s->lock);
    s->done = true;
    pthread_cond_broadcast(&s->done_cond);
    pthread_mutex_unlock(&s->lock);
}

cn_sub *cn_subscribe(cn_link *l, const char *subject, cn_msg_cb cb, void *sub_ctx, int64_t heartbeat_ms, bool *empty,
                     bool *no_stream, char *err, size_t errlen) {
    *empty = false;
    *no_stream = false;
    cn_sub *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->link = l;
    s->cb = cb;
    s->ctx = sub_ctx;
    atomic_init(&s->stopped, false);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->done_cond, NULL);

    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckPolicy = js_AckNone;
    so.Config.Heartbeat = heartbeat_ms * 1000000;
    so.Config.FlowControl = true;
    so.ManualAck = true;
    jsErrCode jerr = 0;
    natsStatus st = js_Subscribe(&s->sub, l->js, subject, on_msg, s, NULL, &so, &jerr);
    if (st != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        *no_stream = st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr ||
                     (last && strstr(last, "no stream matches subject"));
        cn_say(err, errlen, "cannot subscribe", st, jerr);
        pthread_cond_destroy(&s->done_cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    natsSubscription_SetOnCompleteCB(s->sub, on_complete, s);
    /* Bounded by the flow control; the default 65536 messages would report slow consumers. */
    natsSubscription_SetPendingLimits(s->sub, 1 << 20, 256 << 20);
    pthread_mutex_lock(&l->subs_lock);
    s->next = l->subs;
    l->subs = s;
    pthread_mutex_unlock(&l->subs_lock);

    jsConsumerInfo *ci = NULL;
    jerr = 0;
    if (natsSubscription_GetConsumerInfo(&ci, s->sub, NULL, &jerr) == NATS_OK && ci) {
        *empty = ci->NumPending == 0 && ci->Delivered.Consumer == 0;
        jsConsumerInfo_Destroy(ci);
    }
    return s;
}

void cn_unsubscribe(cn_sub *s) {
    if (!s) return;
    atomic_store(&s->stopped, true);
    cn_link *l = s->link;
    pthread_mutex_lock(&l->subs_lock);
    for (cn_sub **p = &l->subs; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    pthread_mutex_unlock(&l->subs_lock);
    if (natsSubscription_Unsubscribe(s->sub) != NATS_OK) {
        /* Unsubscribing on a closed connection fails; the subscription is closed already. */
        natsSubscription_Drain(s->sub);
    }
    pthread_mutex_lock(&s->lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    while (!s->done)
        if (pthread_cond_timedwait(&s->done_cond, &s->lock, &until) != 0) break;
    bool done = s->done;
    pthread_mutex_unlock(&s->lock);
    natsSubscription_Destroy(s->sub);
    if (!done) return; /* a callback may still hold it: leak rather than free under it */
    pthread_cond_destroy(&s->done_cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
