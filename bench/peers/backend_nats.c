/* NATS core through nats.c: Publish (buffered, the library's flusher sends), SubscribeSync with
 * no client-side pending limit (the most favourable setting for NATS: only the server drops). */
#include "backend.h"

#include <nats/nats.h>
#include <stdlib.h>
#include <string.h>

struct pub {
        natsConnection *nc;
        char subject[128];
};

struct sub {
        natsConnection *nc;
        natsSubscription *subscription;
        int ended;
};

static natsConnection *connect_to(const char *address, int send_asap) {
        natsOptions *options = NULL;
        natsConnection *nc = NULL;
        if (natsOptions_Create(&options) != NATS_OK)
                return NULL;
        natsOptions_SetURL(options, address);
        natsOptions_SetSendAsap(options, send_asap);
        natsOptions_SetMaxReconnect(options, 0);
        if (natsConnection_Connect(&nc, options) != NATS_OK)
                nc = NULL;
        natsOptions_Destroy(options);
        return nc;
}

static struct pub *pub_open(const char *address, const char *topic, int low_latency) {
        struct pub *p = calloc(1, sizeof *p);
        if (!(p->nc = connect_to(address, low_latency))) {
                free(p);
                return NULL;
        }
        strncpy(p->subject, topic, sizeof p->subject - 1);
        return p;
}

static int pub_ready(struct pub *p, int subscribers) {
        (void)p, (void)subscribers;
        return 0;
}

static int publish(struct pub *p, const void *data, size_t size) {
        return natsConnection_Publish(p->nc, p->subject, data, (int)size) == NATS_OK ? 0 : -1;
}

static int pub_kick(struct pub *p) {
        (void)p;
        return 0; /* SendAsap for latency runs */
}

static int pub_flush(struct pub *p) { return natsConnection_FlushTimeout(p->nc, 60000) == NATS_OK ? 0 : -1; }

static void pub_close(struct pub *p) {
        natsConnection_Destroy(p->nc);
        free(p);
}

static struct sub *sub_open(const char *address, const char *topic) {
        struct sub *s = calloc(1, sizeof *s);
        if (!(s->nc = connect_to(address, 0)) || natsConnection_SubscribeSync(&s->subscription, s->nc, topic) != NATS_OK ||
            natsSubscription_SetPendingLimits(s->subscription, -1, -1) != NATS_OK || natsConnection_Flush(s->nc) != NATS_OK) {
                if (s->nc)
                        natsConnection_Destroy(s->nc);
                free(s);
                return NULL;
        }
        return s;
}

static int sub_next(struct sub *s, int timeout_ms, message_fn fn, void *ctx) {
        natsMsg *msg = NULL;
        natsStatus status = natsSubscription_NextMsg(&msg, s->subscription, timeout_ms);
        if (status == NATS_TIMEOUT)
                return 0;
        if (status != NATS_OK)
                return -1; /* slow consumer, closed connection */
        int n = 0;
        do {
                fn(ctx, (const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
                natsMsg_Destroy(msg);
                n++;
        } while (n < 4096 && natsSubscription_NextMsg(&msg, s->subscription, 0) == NATS_OK);
        return n;
}

static void sub_close(struct sub *s) {
        natsSubscription_Destroy(s->subscription);
        natsConnection_Destroy(s->nc);
        free(s);
}

const struct backend nats_backend = {"nats", pub_open, pub_ready, publish, pub_kick, pub_flush, pub_close,
                                     sub_open, sub_next, sub_close};
