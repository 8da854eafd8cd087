/* The side-by-side benchmark (make bench-peers): one driver, one backend per system, each
 * through that system's own C client library. */
#ifndef PEERS_BACKEND_H
#define PEERS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* Every message is MESSAGE_SIZE bytes: u64 sequence (from 0), u64 send time (CLOCK_MONOTONIC ns), filler. */
#define MESSAGE_SIZE 64

typedef void (*message_fn)(void *ctx, const uint8_t *data, size_t size);

struct pub;
struct sub;

struct backend {
        const char *name;
        /* Connects a publisher of `topic` (the server side: creates the channel / binds). */
        struct pub *(*pub_open)(const char *address, const char *topic, int low_latency);
        /* Called once the `subscribers` subscriptions exist (ZeroMQ waits for them to reach the publisher). */
        int (*pub_ready)(struct pub *p, int subscribers);
        /* Sends one message; may buffer; blocks only for the system's own back-pressure. */
        int (*publish)(struct pub *p, const void *data, size_t size);
        /* Sends what is buffered now, without waiting for acknowledgements (latency runs). */
        int (*pub_kick)(struct pub *p);
        /* Waits until the server has taken everything published (where the system can tell). */
        int (*pub_flush)(struct pub *p);
        void (*pub_close)(struct pub *p);
        /* Connects and subscribes to `topic`; returns once the subscription is in place. */
        struct sub *(*sub_open)(const char *address, const char *topic);
        /* Waits up to `timeout_ms` for messages, hands each to `fn`. Returns how many, 0 on
         * timeout, -1 when the subscription or connection ended (FULL, disconnected). */
        int (*sub_next)(struct sub *s, int timeout_ms, message_fn fn, void *ctx);
        void (*sub_close)(struct sub *s);
};

extern const struct backend comet_backend, comet_socket_backend, comet_ring_backend, redis_backend, zmq_backend, nats_backend, dbus_backend, raw_backend;

/* The raw relay's server loop (backend_raw.c): one write() per message per subscriber. */
int raw_relay_main(const char *path);

#endif
