/* comet_nats.c: see include/comet_nats.h. */
#include "comet_nats.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void say(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr) {
    if (!err || errlen == 0) return;
    const char *last = nats_GetLastError(NULL);
    if (jerr)
        snprintf(err, errlen, "%s: %s (JetStream error %d%s%s)", what, natsStatus_GetText(s), (int)jerr,
                 last && *last ? ": " : "", last && *last ? last : "");
    else
        snprintf(err, errlen, "%s: %s%s%s", what, natsStatus_GetText(s), last && *last ? ": " : "",
                 last && *last ? last : "");
}

void cn_msg_id(char *out, size_t outlen, int event, uint64_t epoch, uint64_t seq) {
    if (event == CN_OPEN)
        snprintf(out, outlen, "%" PRIu64 "-open", epoch);
    else if (event == CN_CLOSE)
        snprintf(out, outlen, "%" PRIu64 "-close", epoch);
    else
        snprintf(out, outlen, "%" PRIu64 "-%" PRIu64, epoch, seq);
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

/* Reads the Comet-* headers of m into d (event, epoch, seq). */
static void parse(natsMsg *m, cn_delivery *d) {
    bool has_epoch = true, has_seq = true;
    const char *event = NULL;
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
    (void)pa;
    cn_link *l = closure;
    if (!enter(l)) return;
    const char *id = NULL;
    natsMsgHeader_Get(msg, "Nats-Msg-Id", &id);
    if (pae)
        l->ack(l->ctx, natsMsg_GetSubject(msg), id ? id : "", pae->Err == NATS_OK ? -1 : (int)pae->Err, (int)pae->ErrCode,
               pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
    else
        l->ack(l->ctx, natsMsg_GetSubject(msg), id ? id : "", 0, 0, "");
    leave(l);
}

cn_link *cn_connect(const cn_options *o, cn_state_cb state, cn_ack_cb ack, cn_sub_error_cb sub_error, void *ctx,
                    char *err, size_t errlen) {
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s != NATS_OK) {
        say(err, errlen, "cannot make NATS options", s, 0);
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
    s = natsOptions_SetURL(opts, o->url);
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
        say(err, errlen, step, s, 0);
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
        say(err, errlen, "cannot connect", s, 0);
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
        say(err, errlen, "cannot use JetStream", s, 0);
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

int cn_ensure_stream(cn_link *l, const char *stream, const char *subject, int64_t max_msgs, bool memory,
                     int64_t duplicates_ms, char *err, size_t errlen) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {subject};
    cfg.Name = stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.MaxMsgs = max_msgs;
    cfg.Storage = memory ? js_MemoryStorage : js_FileStorage;
    cfg.Duplicates = duplicates_ms * 1000000;
    cfg.Description = "mirror of a cometd channel (Comet-Epoch/Comet-Seq headers)";
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    natsStatus s = js_AddStream(&si, l->js, &cfg, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        jerr = 0;
        s = js_UpdateStream(&si, l->js, &cfg, NULL, &jerr);
    }
    if (si) jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        say(err, errlen, "cannot make the stream", s, jerr);
        return CN_ERROR;
    }
    return CN_OK;
}

int cn_purge(cn_link *l, const char *stream, char *err, size_t errlen) {
    jsErrCode jerr = 0;
    natsStatus s = js_PurgeStream(l->js, stream, NULL, &jerr);
    if (s != NATS_OK) {
        say(err, errlen, "cannot purge the stream", s, jerr);
        return CN_ERROR;
    }
    return CN_OK;
}

int cn_last(cn_link *l, const char *stream, const char *subject, cn_delivery *out, char *err, size_t errlen) {
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    memset(out, 0, sizeof *out);
    natsStatus s = js_GetLastMsg(&m, l->js, stream, subject, NULL, &jerr);
    if (s != NATS_OK) {
        if (jerr == JSNoMessageFoundErr) return CN_NONE;
        if (jerr == JSStreamNotFoundErr) return CN_NO_STREAM;
        say(err, errlen, "cannot read the stream's last message", s, jerr);
        return CN_ERROR;
    }
    parse(m, out);
    natsMsg_Destroy(m);
    return CN_OK;
}

int cn_publish(cn_link *l, const char *subject, int event, uint64_t epoch, uint64_t seq, const char *expect_last_id,
               const void *data, size_t len, char *err, size_t errlen) {
    natsMsg *m = NULL;
    char number[24], id[48];
    natsStatus s = natsMsg_Create(&m, subject, NULL, data, (int)len);
    if (s == NATS_OK) {
        snprintf(number, sizeof number, "%" PRIu64, epoch);
        s = natsMsgHeader_Set(m, "Comet-Epoch", number);
    }
    if (s == NATS_OK) {
        snprintf(number, sizeof number, "%" PRIu64, seq);
        if (event == CN_OPEN) {
            s = natsMsgHeader_Set(m, "Comet-Event", "open");
            if (s == NATS_OK) s = natsMsgHeader_Set(m, "Comet-Next", number);
        } else if (event == CN_CLOSE) {
            s = natsMsgHeader_Set(m, "Comet-Event", "close");
            if (s == NATS_OK) s = natsMsgHeader_Set(m, "Comet-Last", number);
        } else {
            s = natsMsgHeader_Set(m, "Comet-Seq", number);
        }
    }
    if (s == NATS_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        cn_msg_id(id, sizeof id, event, epoch, seq);
        po.MsgId = id;
        po.ExpectLastMsgId = expect_last_id;
        s = js_PublishMsgAsync(l->js, &m, &po);
    }
    if (m) natsMsg_Destroy(m); /* still ours only when publishing failed */
    if (s != NATS_OK) {
        say(err, errlen, "cannot publish", s, 0);
        return CN_ERROR;
    }
    return CN_OK;
}

int cn_publish_complete(cn_link *l, int64_t timeout_ms) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms;
    return js_PublishAsyncComplete(l->js, &po) == NATS_OK ? CN_OK : CN_ERROR;
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    (void)nc;
    (void)sub;
    cn_sub *s = closure;
    if (!atomic_load(&s->stopped)) {
        cn_delivery d;
        memset(&d, 0, sizeof d);
        parse(msg, &d);
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
        say(err, errlen, "cannot subscribe", st, jerr);
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
