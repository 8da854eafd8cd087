/* ZeroMQ PUB/SUB through libzmq: an XPUB with XPUB_NODROP (the publisher waits instead of
 * dropping at the high-water mark) bound on an ipc:// socket, SUB sockets subscribed to everything.
 * Every socket has a context (an I/O thread) of its own, as separate processes would. */
#include "backend.h"

#include <stdlib.h>
#include <zmq.h>

struct pub {
        void *context, *socket;
};

struct sub {
        void *context, *socket;
};

static struct pub *pub_open(const char *address, const char *topic, int low_latency) {
        (void)topic, (void)low_latency;
        struct pub *p = calloc(1, sizeof *p);
        int one = 1;
        p->context = zmq_ctx_new();
        p->socket = zmq_socket(p->context, ZMQ_XPUB);
        zmq_setsockopt(p->socket, ZMQ_XPUB_NODROP, &one, sizeof one);
        zmq_setsockopt(p->socket, ZMQ_XPUB_VERBOSE, &one, sizeof one);
        if (zmq_bind(p->socket, address) != 0) {
                zmq_close(p->socket);
                zmq_ctx_term(p->context);
                free(p);
                return NULL;
        }
        return p;
}

/* Waits for every subscription to reach the publisher (no "slow joiner" loss). */
static int pub_ready(struct pub *p, int subscribers) {
        char note[256];
        for (int i = 0; i < subscribers; i++)
                if (zmq_recv(p->socket, note, sizeof note, 0) < 0)
                        return -1;
        return 0;
}

static int publish(struct pub *p, const void *data, size_t size) {
        return zmq_send(p->socket, data, size, 0) < 0 ? -1 : 0;
}

static int pub_kick(struct pub *p) {
        (void)p;
        return 0;
}

static int pub_flush(struct pub *p) {
        (void)p;
        return 0; /* ZeroMQ has no acknowledgement: the readers' completion is the measure */
}

static void pub_close(struct pub *p) {
        int linger = 0;
        zmq_setsockopt(p->socket, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(p->socket);
        zmq_ctx_term(p->context);
        free(p);
}

static struct sub *sub_open(const char *address, const char *topic) {
        (void)topic;
        struct sub *s = calloc(1, sizeof *s);
        s->context = zmq_ctx_new();
        s->socket = zmq_socket(s->context, ZMQ_SUB);
        if (zmq_connect(s->socket, address) != 0 || zmq_setsockopt(s->socket, ZMQ_SUBSCRIBE, "", 0) != 0) {
                zmq_close(s->socket);
                zmq_ctx_term(s->context);
                free(s);
                return NULL;
        }
        return s;
}

static int sub_next(struct sub *s, int timeout_ms, message_fn fn, void *ctx) {
        uint8_t buffer[MESSAGE_SIZE];
        zmq_setsockopt(s->socket, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
        int size = zmq_recv(s->socket, buffer, sizeof buffer, 0);
        if (size < 0)
                return 0;
        fn(ctx, buffer, (size_t)size);
        int n = 1;
        while (n < 4096 && (size = zmq_recv(s->socket, buffer, sizeof buffer, ZMQ_DONTWAIT)) >= 0) {
                fn(ctx, buffer, (size_t)size);
                n++;
        }
        return n;
}

static void sub_close(struct sub *s) {
        int linger = 0;
        zmq_setsockopt(s->socket, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(s->socket);
        zmq_ctx_term(s->context);
        free(s);
}

const struct backend zmq_backend = {"zeromq", pub_open, pub_ready, publish, pub_kick, pub_flush, pub_close,
                                    sub_open, sub_next, sub_close};
