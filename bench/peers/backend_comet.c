/* comet through libcomet: a site channel with the default ring (1000), or one of 65536 messages. */
#include "backend.h"

#include <comet.h>
#include <errno.h>
#include <stdlib.h>

struct pub {
        comet *c;
        uint64_t channel;
};

struct sub {
        comet *c;
        message_fn fn;
        void *ctx;
        int ended;
};

/* `ring`: the channel's ring in messages (0: the daemon's default, 1000; RING overrides). */
static struct pub *pub_open_ring(const char *address, const char *topic, uint32_t ring) {
        struct pub *p = calloc(1, sizeof *p);
        if (getenv("RING"))
                ring = (uint32_t)atoi(getenv("RING"));
        if (comet_connect(&p->c, address) < 0 || comet_create(p->c, topic, ring, &p->channel) < 0) {
                comet_unref(p->c);
                free(p);
                return NULL;
        }
        return p;
}

static struct pub *pub_open(const char *address, const char *topic, int low_latency) {
        (void)low_latency;
        return pub_open_ring(address, topic, 0);
}

/* A ring of 65536 messages: mapped readers of the producer's user stay on the ring under bursts
 * (below 4096 messages they are served from the socket when they fall behind; SEMANTICS.md). */
static struct pub *pub_open_big_ring(const char *address, const char *topic, int low_latency) {
        (void)low_latency;
        return pub_open_ring(address, topic, 65536);
}

static int pub_ready(struct pub *p, int subscribers) {
        (void)p, (void)subscribers;
        return 0;
}

static int publish(struct pub *p, const void *data, size_t size) {
        int r;
        while ((r = comet_push(p->c, p->channel, data, size)) == -EAGAIN)
                if ((r = comet_wait(p->c, UINT64_MAX)) < 0 || (r = comet_process(p->c)) < 0)
                        return r;
        return r;
}

static int pub_kick(struct pub *p) {
        int r = comet_flush(p->c);
        return r < 0 ? r : comet_process(p->c);
}

static int pub_flush(struct pub *p) { return comet_ping(p->c); }

static void pub_close(struct pub *p) {
        comet_unref(p->c);
        free(p);
}

static int on_message(comet *c, uint32_t subscription, uint64_t sequence, const void *data, size_t size, void *userdata) {
        (void)c, (void)subscription, (void)sequence;
        struct sub *s = userdata;
        s->fn(s->ctx, data, size);
        return 0;
}

static void on_end(comet *c, uint32_t subscription, comet_end reason, uint64_t sequence, void *userdata) {
        (void)c, (void)subscription, (void)reason, (void)sequence;
        ((struct sub *)userdata)->ended = 1;
}

/* `flags`: 0, mapped readers (libcomet's default when the daemon offers it); or
 * COMET_SUBSCRIBE_SOCKET, MESSAGE frames from the socket. */
static struct sub *sub_open_with(const char *address, const char *topic, unsigned flags) {
        struct sub *s = calloc(1, sizeof *s);
        if (comet_connect(&s->c, address) < 0 ||
            comet_subscribe(s->c, topic, COMET_FROM_NEXT, 0, 0, flags, on_message, on_end, s, NULL) < 0) {
                comet_unref(s->c);
                free(s);
                return NULL;
        }
        return s;
}

/* Counts what one call delivers through the handler. */
struct counting {
        message_fn fn;
        void *ctx;
        int n;
};

static void count_one(void *ctx, const uint8_t *data, size_t size) {
        struct counting *k = ctx;
        k->n++;
        k->fn(k->ctx, data, size);
}

static int sub_next(struct sub *s, int timeout_ms, message_fn fn, void *ctx) {
        if (s->ended)
                return -1;
        struct counting k = {fn, ctx, 0};
        s->fn = count_one;
        s->ctx = &k;
        int r = comet_wait(s->c, (uint64_t)timeout_ms * 1000);
        if (r >= 0)
                r = comet_process(s->c);
        if (r < 0 || (s->ended && k.n == 0))
                return -1;
        return k.n;
}

static void sub_close(struct sub *s) {
        comet_unref(s->c);
        free(s);
}

static struct sub *sub_open(const char *address, const char *topic) { return sub_open_with(address, topic, 0); }
static struct sub *sub_open_socket(const char *address, const char *topic) {
        return sub_open_with(address, topic, COMET_SUBSCRIBE_SOCKET);
}

const struct backend comet_backend = {"comet", pub_open, pub_ready, publish, pub_kick, pub_flush, pub_close,
                                      sub_open, sub_next, sub_close};
/* The same daemon read from the socket: what readers get without mapped rings. */
const struct backend comet_socket_backend = {"comet-socket", pub_open, pub_ready, publish, pub_kick, pub_flush, pub_close,
                                             sub_open_socket, sub_next, sub_close};
/* Mapped readers on a ring of 65536 messages. */
const struct backend comet_ring_backend = {"comet-ring", pub_open_big_ring, pub_ready, publish, pub_kick, pub_flush, pub_close,
                                           sub_open, sub_next, sub_close};
