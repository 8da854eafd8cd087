/* The connection: options, callbacks, closing without a callback left behind. */
#include "bridge.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cn_say(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr) {
    if (!err || errlen == 0) return;
    const char *last = nats_GetLastError(NULL);
    if (jerr)
        snprintf(err, errlen, "%s: %s (JetStream error %d%s%s)", what, natsStatus_GetText(s), (int)jerr,
                 last && *last ? ": " : "", last && *last ? last : "");
    else
        snprintf(err, errlen, "%s: %s%s%s", what, natsStatus_GetText(s), last && *last ? ": " : "",
                 last && *last ? last : "");
}

static uint64_t header_u64(natsMsg *m, const char *key, bool *present) {
    const char *value = NULL;
    if (natsMsgHeader_Get(m, key, &value) != NATS_OK || !value) {
        *present = false;
        return 0;
    }
    char *end = NULL;
    unsigned long long n = strtoull(value, &end, 10);
    if (end == value || *end != '\0') {
        *present = false;
        return 0;
    }
    return (uint64_t)n;
}

/* Reads the Comet-* headers of m into d (event, epoch, seq, count). */
void cn_parse(natsMsg *m, cn_delivery *d) {
    bool has_epoch = true, has_seq = true, has_count = true;
    const char *event = NULL;
    d->count = 1;
    d->epoch = header_u64(m, "Comet-Epoch", &has_epoch);
    if (!has_epoch || d->epoch == 0) {
        d->event = CN_FOREIGN;
        return;
    }
    if (natsMsgHeader_Get(m, "Comet-Event", &event) == NATS_OK && event) {
        if (strcmp(event, "open") == 0) {
            d->event = CN_OPEN;
            d->seq = header_u64(m, "Comet-Next", &has_seq);
        } else if (strcmp(event, "close") == 0) {
            d->event = CN_CLOSE;
            d->seq = header_u64(m, "Comet-Last", &has_seq);
        } else if (strcmp(event, "run") == 0) {
            /* Several messages in one: older importers skip it as foreign (a gap, never a wrong message). */
            d->event = CN_MESSAGE;
            d->seq = header_u64(m, "Comet-Seq", &has_seq);
            d->count = header_u64(m, "Comet-Count", &has_count);
            if (d->seq == 0 || !has_count || d->count < 2 || d->count > CN_MAX_RUN) has_seq = false;
        } else {
            d->event = CN_FOREIGN;
            return;
        }
    } else {
        d->event = CN_MESSAGE;
        d->seq = header_u64(m, "Comet-Seq", &has_seq);
        if (d->seq == 0) has_seq = false;
    }
    if (!has_seq) d->event = CN_FOREIGN;
}

/* A callback may use the link's owner only between enter() (true) and leave(). */
static bool enter(cn_link *l) {
    atomic_fetch_add(&l->active, 1);
    if (!atomic_load(&l->closing)) return true;
    atomic_fetch_sub(&l->active, 1);
    return false;
}
static void leave(cn_link *l) { atomic_fetch_sub(&l->active, 1); }

static void tell(cn_link *l, int state) {
    if (!enter(l)) return;
    if (l->state) l->state(l->ctx, state);
    leave(l);
}

static void on_connected(natsConnection *nc, void *closure) {
    (void)nc;
    tell(closure, CN_CONNECTED);
}
static void on_disconnected(natsConnection *nc, void *closure) {
    (void)nc;
    tell(closure, CN_DISCONNECTED);
}
static void on_reconnected(natsConnection *nc, void *closure) {
    (void)nc;
    tell(closure, CN_RECONNECTED);
}
static void on_closed(natsConnection *nc, void *closure) {
    (void)nc;
    cn_link *l = closure;
    atomic_fetch_add(&l->active, 1);
    if (!atomic_load(&l->closing) && l->state) l->state(l->ctx, CN_CLOSED);
    pthread_mutex_lock(&l->close_lock);
    l->closed_seen = true;
    pthread_cond_broadcast(&l->close_cond);
    pthread_mutex_unlock(&l->close_lock);
    atomic_fetch_sub(&l->active, 1); /* the last touch of the link */
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure) {
    (void)nc;
    cn_link *l = closure;
    if (!sub || !l->sub_error || !enter(l)) return;
    pthread_mutex_lock(&l->subs_lock);
    void *ctx = NULL;
    for (cn_sub *s = l->subs; s; s = s->next)
        if (s->sub == sub && !atomic_load(&s->stopped)) ctx = s->ctx;
    pthread_mutex_unlock(&l->subs_lock);
    if (ctx) l->sub_error(l->ctx, ctx, (int)err, natsStatus_GetText(err));
    leave(l);
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
    (void)js;
    cn_link *l = closure;
    if (!enter(l)) return;
    cn_delivery d;
    memset(&d, 0, sizeof d);
    cn_parse(msg, &d);
    if (pae)
        l->ack(l->ctx, d.event, d.epoch, d.seq, pae->Err == NATS_OK ? -1 : (int)pae->Err, (int)pae->ErrCode,
               pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err), 0);
    else
        l->ack(l->ctx, d.event, d.epoch, d.seq, 0, 0, "", pa ? pa->Sequence : 0);
    leave(l);
}

cn_link *cn_connect(const cn_options *o, cn_state_cb state, cn_ack_cb ack, cn_sub_error_cb sub_error, void *ctx,
                    char *err, size_t errlen) {
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s != NATS_OK) {
        cn_say(err, errlen, "cannot make NATS options", s, 0);
        return NULL;
    }
    cn_link *l = calloc(1, sizeof *l);
    if (!l) {
        natsOptions_Destroy(opts);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->state = state;
    l->ack = ack;
    l->sub_error = sub_error;
    l->ctx = ctx;
    l->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 2000;
    atomic_init(&l->closing, false);
    atomic_init(&l->active, 0);
    pthread_mutex_init(&l->subs_lock, NULL);
    pthread_mutex_init(&l->close_lock, NULL);
    pthread_cond_init(&l->close_cond, NULL);

    const char *step = "url";
    if (o->servers_len > 0) s = natsOptions_SetServers(opts, (const char **)o->servers, o->servers_len);
    else s = natsOptions_SetURL(opts, o->url);
    if (s == NATS_OK && o->user) step = "user", s = natsOptions_SetUserInfo(opts, o->user, o->password);
    if (s == NATS_OK && o->token) step = "token", s = natsOptions_SetToken(opts, o->token);
    if (s == NATS_OK && o->creds) step = "creds file", s = natsOptions_SetUserCredentialsFromFiles(opts, o->creds, NULL);
    if (s == NATS_OK && (o->tls_ca || o->tls_cert)) step = "TLS", s = natsOptions_SetSecure(opts, true);
    if (s == NATS_OK && o->tls_ca) step = "TLS CA file", s = natsOptions_LoadCATrustedCertificates(opts, o->tls_ca);
    if (s == NATS_OK && o->tls_cert)
        step = "TLS certificate", s = natsOptions_LoadCertificatesChain(opts, o->tls_cert, o->tls_key);
    if (s == NATS_OK && o->name) step = "name", s = natsOptions_SetName(opts, o->name);
    if (s == NATS_OK) step = "timeout", s = natsOptions_SetTimeout(opts, l->timeout_ms);
    /* Latency: nats.c otherwise batches publishes for about a millisecond. */
    if (s == NATS_OK) s = natsOptions_SetSendAsap(opts, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, o->reconnect_wait_ms > 0 ? o->reconnect_wait_ms : 1000);
    if (s == NATS_OK) s = natsOptions_SetReconnectJitter(opts, 250, 500);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts, on_disconnected, l);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, on_reconnected, l);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(opts, on_closed, l);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(opts, on_error, l);
    if (s == NATS_OK && o->keep_trying) s = natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, l);
    /* Subscriptions share a small pool of delivery threads (each keeps its order) instead of a
     * thread each: imports cannot multiply the daemon's threads. */
    if (s == NATS_OK) s = nats_SetMessageDeliveryPoolSize(2);
    if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(opts, true);
    if (s != NATS_OK) {
        cn_say(err, errlen, step, s, 0);
        natsOptions_Destroy(opts);
        pthread_mutex_destroy(&l->subs_lock);
        free(l);
        return NULL;
    }
    s = natsConnection_Connect(&l->nc, opts);
    natsOptions_Destroy(opts);
    if (s == NATS_NOT_YET_CONNECTED && o->keep_trying) {
        s = NATS_OK; /* connects in the background; on_connected tells */
    } else if (s == NATS_OK && state) {
        state(ctx, CN_CONNECTED);
    }
    if (s != NATS_OK) {
        cn_say(err, errlen, "cannot connect", s, 0);
        if (l->nc) natsConnection_Destroy(l->nc);
        pthread_mutex_destroy(&l->subs_lock);
        free(l);
        return NULL;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = l->timeout_ms;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = l;
    jo.PublishAsync.MaxPending = 1 << 20; /* the caller bounds what is in flight */
    s = natsConnection_JetStream(&l->js, l->nc, &jo);
    if (s != NATS_OK) {
        cn_say(err, errlen, "cannot use JetStream", s, 0);
        l->js = NULL;
        cn_close(l); /* the connection is up: close it the way that waits for its callbacks */
        return NULL;
    }
    return l;
}

void cn_close(cn_link *l) {
    if (!l) return;
    atomic_store(&l->closing, true);
    natsConnection_Close(l->nc);
    /* The closed callback comes from nats.c's callback thread; wait for it (5 s at most). */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&l->close_lock);
    while (!l->closed_seen)
        if (pthread_cond_timedwait(&l->close_cond, &l->close_lock, &until) != 0) break;
    bool seen = l->closed_seen;
    pthread_mutex_unlock(&l->close_lock);
    if (l->js) jsCtx_Destroy(l->js);
    natsConnection_Destroy(l->nc);
    for (int i = 0; i < 1000 && atomic_load(&l->active) > 0; i++) nats_Sleep(1);
    if (!seen || atomic_load(&l->active) > 0) return; /* a callback may still hold it: leak it rather than free under it */
    pthread_cond_destroy(&l->close_cond);
    pthread_mutex_destroy(&l->close_lock);
    pthread_mutex_destroy(&l->subs_lock);
    free(l);
}

bool cn_is_connected(cn_link *l) { return natsConnection_Status(l->nc) == NATS_CONN_STATUS_CONNECTED; }
