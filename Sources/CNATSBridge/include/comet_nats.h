/* comet_nats.h: the few NATS JetStream operations comet-bridge needs, over nats.c.
 *
 * A narrow C layer so that the Swift side never handles nats.c's option structs, header
 * accessors or callback signatures. Every call that talks to the server blocks (up to the
 * link's timeout): callers run them off the daemon's event loop. Callbacks run on nats.c's
 * threads.
 *
 * Message mapping (docs/FEDERATION.md): every message a cometd exports carries the headers
 *   Comet-Epoch: <epoch, decimal>   Comet-Seq: <sequence, decimal>
 * markers carry Comet-Event: open (with Comet-Next: <first sequence>) or close (with
 * Comet-Last: <last sequence>), and Nats-Msg-Id is "<epoch>-<seq>", "<epoch>-open" or
 * "<epoch>-close".
 */
#ifndef COMET_NATS_H
#define COMET_NATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cn_link cn_link;
typedef struct cn_sub cn_sub;

/* Connection states reported to cn_state_cb. */
enum { CN_CONNECTED = 1, CN_DISCONNECTED = 2, CN_RECONNECTED = 3, CN_CLOSED = 4 };

/* What a message is (Comet-Event). */
enum { CN_FOREIGN = -1, CN_MESSAGE = 0, CN_OPEN = 1, CN_CLOSE = 2 };

/* Results of calls that can find nothing. */
enum { CN_OK = 0, CN_NONE = 1, CN_ERROR = -1, CN_NO_STREAM = -2 };

/* The most messages one run (Comet-Event: run) carries. */
enum { CN_MAX_RUN = 4096 };

typedef struct cn_options {
    const char *url;      /* nats://host:port (required unless servers is given) */
    const char *const *servers; /* several: any of them may be used (and those the cluster announces) */
    int servers_len;
    const char *user;     /* user + password, or token, or creds (a .creds file) */
    const char *password;
    const char *token;
    const char *creds;
    const char *tls_ca;   /* PEM file of trusted CAs: the connection uses TLS */
    const char *tls_cert; /* client certificate and key (PEM), optional */
    const char *tls_key;
    const char *name;     /* connection name the server shows */
    int64_t timeout_ms;   /* connect and request timeout */
    bool keep_trying;     /* retry a failed first connect and reconnect forever; else the first failure is final */
    int64_t reconnect_wait_ms;
} cn_options;

typedef void (*cn_state_cb)(void *ctx, int state);
/* One acknowledgement of cn_publish, naming the message by what cn_publish was given (`event`,
 * `epoch`, `seq`, read back from its Comet-* headers): status 0 = stored at stream sequence
 * `stream_seq`; otherwise refused, with JetStream's error and text. */
typedef void (*cn_ack_cb)(void *ctx, int event, uint64_t epoch, uint64_t seq, int status, int js_error, const char *text,
                          uint64_t stream_seq);
/* A subscription's trouble (missed heartbeats, slow consumer): the caller re-subscribes. */
typedef void (*cn_sub_error_cb)(void *ctx, void *sub_ctx, int status, const char *text);

/* One message delivered to a subscription. data is valid during the callback only. */
typedef struct cn_delivery {
    int event;           /* CN_MESSAGE, CN_OPEN, CN_CLOSE, CN_FOREIGN */
    uint64_t epoch;
    uint64_t seq;        /* message: its sequence; open: the first sequence; close: the last */
    uint64_t stream_seq;
    uint64_t pending;    /* messages of the subject after this one, when it was sent */
    uint64_t count;      /* message: how many it carries (a run, Comet-Event: run: `count` messages from `seq`,
                            each a u32 big-endian length then its bytes, in data); else 1 */
    const void *data;
    int len;
} cn_delivery;
typedef void (*cn_msg_cb)(void *sub_ctx, const cn_delivery *d);

/* Connects (with keep_trying, returns at once and connects in the background). NULL on failure,
 * with the reason in err. */
cn_link *cn_connect(const cn_options *o, cn_state_cb state, cn_ack_cb ack, cn_sub_error_cb sub_error, void *ctx,
                    char *err, size_t errlen);
/* Closes the connection and frees the link (subscriptions must be gone). */
void cn_close(cn_link *l);
bool cn_is_connected(cn_link *l);

/* Makes stream `stream` with the one subject `subject` exist, keeping at most max_msgs messages,
 * in memory or on disk, on `replicas` servers of the cluster, with a de-duplication window of
 * duplicates_ms. An existing stream is updated to that configuration. */
int cn_ensure_stream(cn_link *l, const char *stream, const char *subject, int64_t max_msgs, bool memory, int replicas,
                     int64_t duplicates_ms, char *err, size_t errlen);
/* Removes every message of `stream`. */
int cn_purge(cn_link *l, const char *stream, char *err, size_t errlen);
/* The last message of `subject` in `stream`: CN_OK (out filled), CN_NONE (empty), CN_NO_STREAM, CN_ERROR. */
int cn_last(cn_link *l, const char *stream, const char *subject, cn_delivery *out, char *err, size_t errlen);

/* Publishes asynchronously (with Nats-Msg-Id `msg_id` unless NULL); the acknowledgement comes to
 * cn_ack_cb.
 * With `expect_last_seq` != 0 JetStream stores it only if the stream's last message has that
 * stream sequence (Nats-Expected-Last-Sequence: replicated, so it holds across a leader change,
 * unlike the last message id). For CN_OPEN `seq` is the next sequence, for CN_CLOSE the last.
 * A CN_MESSAGE with `count` > 1 is a run: `data` holds `count` messages from `seq`, each a u32
 * big-endian length then its bytes. */
int cn_publish(cn_link *l, const char *subject, int event, uint64_t epoch, uint64_t seq, uint64_t count, const char *msg_id,
               uint64_t expect_last_seq, const void *data, size_t len, char *err, size_t errlen);
/* Waits up to timeout_ms for the publishes in flight to be acknowledged. */
int cn_publish_complete(cn_link *l, int64_t timeout_ms);

/* Reads `subject` from the start of what its stream keeps (an ephemeral push consumer, no acks,
 * heartbeats every heartbeat_ms). *empty is set when the subject held nothing at that moment.
 * NULL on failure: *no_stream is set when no stream holds the subject. */
cn_sub *cn_subscribe(cn_link *l, const char *subject, cn_msg_cb cb, void *sub_ctx, int64_t heartbeat_ms, bool *empty,
                     bool *no_stream, char *err, size_t errlen);
/* Stops and frees a subscription; no callback runs after it returns. */
void cn_unsubscribe(cn_sub *s);

/* comet-bench's ceiling: a plain nats.c program that publishes `count` messages of `size` bytes
 * asynchronously (at most `max_pending` unacknowledged) to a fresh stream `stream` (file
 * storage, `replicas`) holding `subject`, then deletes it. Messages per second; negative with
 * the reason in err on failure. */
double cn_bench_publish(const char *const *servers, int servers_len, const char *stream, const char *subject, int replicas,
                        int count, int size, int max_pending, char *err, size_t errlen);

#endif
