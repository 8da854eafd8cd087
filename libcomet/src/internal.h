/* libcomet internals shared by its source files (never installed). */
#ifndef COMET_INTERNAL_H
#define COMET_INTERNAL_H

#include "comet.h"

#include "buffer.h"

enum {
        OP_HELLO = 0x01, OP_CREATE = 0x02, OP_PUSH = 0x03, OP_PUSH_BATCH = 0x04, OP_CLOSE = 0x05, OP_SUBSCRIBE = 0x06,
        OP_UNSUBSCRIBE = 0x07, OP_LIST = 0x08, OP_PING = 0x09, OP_RESUME = 0x0A, OP_CREATE_PRIVATE = 0x0B, OP_ACK = 0x0C,
        OP_SESSIONS = 0x0D, OP_ANSWER = 0x0E, OP_WAIT_TIMEOUT = 0x0F, OP_SUBSCRIBE_EXTERNAL = 0x10, OP_LIST_FROM = 0x11,
        OP_SESSIONS_FROM = 0x12, OP_ADOPT = 0x14, OP_PUSH_NUMBERED = 0x15, OP_RING = 0x1A,
        OP_OK = 0x80, OP_ERROR = 0x81,
        OP_MESSAGE = 0x90, OP_FULL = 0x91, OP_CLOSED = 0x92, OP_STARTED = 0x93, OP_OFFER = 0x94, OP_ENDED = 0x95,
        OP_PULL = 0x96, OP_RESET = 0x97, OP_FAILED = 0x98, OP_RING_ADVANCED = 0x99, OP_RING_DETACHED = 0x9A,
};

#define OUTPUT_LIMIT (4u << 20)
/* Queued output past which a push writes what the socket takes at once (pipelining). */
#define WRITE_THRESHOLD (256u << 10)
/* Largest PUSH_BATCH frame that consecutive comet_push() calls are coalesced into. */
#define BATCH_LIMIT (64u << 10)
#define DEFAULT_MAX_FRAME (1u << 20)

/* HELLO feature bits. */
#define FEATURE_MAPPED_RINGS 0x4u
/* HELLO feature bit 3 (0.9.2): SUBSCRIBE's RETURN, a detached mapped reader is given its ring back. */
#define FEATURE_RING_RETURN 0x8u
/* SUBSCRIBE's MAPPED flag. */
#define SUBSCRIBE_MAPPED 0x8u
/* SUBSCRIBE's RETURN flag (with MAPPED). */
#define SUBSCRIBE_RETURN 0x10u

/* A ring file mapped read-only (mapped.c); `base` NULL when the subscription reads the socket. */
struct mapped_ring {
        uint8_t *base;
        size_t length;
        uint64_t capacity, size, data;
        /* A protected reader's position page (read-write, shared with the daemon), or NULL. */
        uint8_t *position;
};

struct subscription {
        uint32_t id;        /* what the application knows it by */
        uint32_t server_id; /* what the daemon knows it by (another one after a reconnect) */
        int is_private;
        /* To subscribe again after a reconnect (reconnect.c): the request, the epoch and the last
         * sequence number handed on (anything at or below it that comes again is dropped). */
        char *name;         /* NULL: not made again (an external channel) */
        uint8_t flags;      /* SUBSCRIBE flags: 0x1 wait, 0x2 private, 0x4 owner, 0x8 mapped, 0x10 return */
        uint32_t pinned_owner;
        uint64_t epoch;
        uint64_t last;
        uint64_t acked;   /* highest sequence acknowledged by the handler */
        uint64_t ack_sent; /* highest sequence sent in an ACK */
        comet_message_handler on_message;
        comet_end_handler on_end;
        void *userdata;
        uint32_t owner_uid, owner_gid; /* the channel's creator; 0xffffffff when not known */
        struct mapped_ring ring;
};

struct puller {
        uint64_t channel;
        comet_pull_handler handler;
        void *userdata;
};

/* What a request sent without waiting was, so that its answer can be handed on. */
enum request_kind {
        REQ_PUSH = 1,     /* comet_push(): `count` messages in one frame; refusals go to the error handler */
        REQ_ANSWER,       /* comet_answer(): refusals go to the error handler */
        REQ_ACK,          /* queue_acks() */
        REQ_PUSH_SEQ,     /* comet_push_async(): done(sequence) */
        REQ_CREATE,       /* comet_create*_async(): done(channel) */
        REQ_CREATE_UNLIMITED, /* ... and registers the pull handler */
        REQ_SUBSCRIBE,    /* comet_subscribe*_async(): done(subscription), registers it */
        REQ_UNSUBSCRIBE,  /* done(0) */
        REQ_CLOSE,        /* done(0), forgets the pull handler */
        REQ_RESUME,       /* done(0), adopts `session` */
        REQ_WAIT_TIMEOUT, /* done(1 if the session ended, else 0) */
        REQ_PING,         /* done(0) */
};

/* A request sent without waiting for its answer. Answers are matched by id; they nearly always
 * come in order, so the oldest entry is checked first. */
struct pending {
        uint32_t id; /* 0: already answered (out of order), skipped */
        uint8_t kind;
        uint8_t is_private;
        uint32_t count;
        uint64_t channel;
        comet_done_handler done;
        void *done_userdata;
        comet_message_handler on_message;
        comet_end_handler on_end;
        comet_pull_handler on_pull;
        void *userdata;
        comet_session session;
        /* REQ_SUBSCRIBE: what to subscribe again after a reconnect. */
        char *name;
        uint8_t flags;
        uint32_t pinned_owner;
        /* A numbered push (PUSH_NUMBERED, numbered.c): its first producer number, the length of
         * its frame in the journal, and whether an earlier push of its channel was refused (its
         * answer will be OUT_OF_ORDER; it is not sent again). */
        uint8_t numbered, doomed;
        uint32_t frame_len;
        uint64_t number;
};

/* A channel this connection created, and the token that takes it back after a reconnect. */
struct produced {
        uint64_t channel;
        uint8_t token[16];
        uint64_t next_number; /* the producer number the next numbered push gets */
};

struct comet {
        int fd;
        int failed; /* the connection's error once it failed, else 0 */
        uint32_t next_id;
        uint32_t max_frame;
        comet_session session;
        struct buf out;
        struct buf in;
        struct buf backlog; /* frames set aside while a blocking call waited for its answer */
        struct pending *pending; /* a ring: `pending_count` entries from `pending_head` */
        size_t pending_head, pending_count, pending_capacity;
        /* The PUSH_BATCH being filled at the end of `out` (batch_open), for consecutive comet_push(). */
        int batch_open;
        size_t batch_mark;
        size_t batch_count_at; /* offset of its count field from the frame's start */
        uint64_t batch_channel;
        uint32_t batch_count;
        int dispatching; /* depth of handler calls in progress */
        size_t next_write_at; /* queued bytes at which a push next tries to write */
        struct subscription *subs;
        size_t sub_count, sub_capacity;
        struct puller *pullers;
        size_t puller_count, puller_capacity;
        comet_offer_handler on_offer;
        void *offer_userdata;
        comet_error_handler on_error;
        void *error_userdata;
        char last_error[1024];
        /* Reconnection (reconnect.c). */
        char path[108];
        int reconnect, reconnecting, reconnected;
        struct produced *produced;
        size_t produced_count, produced_capacity;
        uint64_t features; /* HELLO's features: bit 0, numbered pushes; bit 2, mapped rings; bit 3, ring return */
        uint8_t *ring_copy; /* where a mapped message is copied before its handler sees it */
        size_t ring_copy_capacity;
        /* The frames of numbered pushes without an answer, in order: sent again after a reconnect. */
        struct buf journal;
        uint32_t next_local_id;
};

/* io.c: the socket, framing, blocking waits. */
uint64_t now_usec(void);
int grow(void **array, size_t *capacity, size_t count, size_t element);
int write_some(comet *c);
int write_before(comet *c, size_t limit);
int wait_fd(comet *c, short events, uint64_t timeout_usec);
int read_some(comet *c);
int next_frame(comet *c, struct buf *b, struct reader *body);
int has_frame(const struct buf *b);
void set_error_message(comet *c, struct reader *r);
int await_answer(comet *c, uint32_t id, uint8_t *reply, size_t reply_size, size_t *reply_len);
uint64_t be64(const uint8_t *p);
uint32_t be32(const uint8_t *p);
int request_begin(comet *c, uint8_t op, uint32_t *id, size_t *mark);
uint32_t new_id(comet *c);

/* dispatch.c: handing what arrives to the handlers. */
struct subscription *find_sub(comet *c, uint32_t server_id);
struct subscription *find_local(comet *c, uint32_t id);
void remove_sub(comet *c, uint32_t id); /* by the application's id; frees the name */
/* Forgets the subscription the daemon knows as `sub` and tells its end handler why. */
void end_subscription(comet *c, uint32_t sub, comet_end reason, uint64_t value);
/* Registers a subscription the daemon accepted; returns the application's id for it. */
int add_sub(comet *c, const struct subscription *s, uint32_t *ret_id);
void remove_puller(comet *c, uint64_t channel);
int fail(comet *c, int error);
int queue_acks(comet *c);

/* mapped.c */
void ring_release(struct mapped_ring *ring);
int ring_advanced(comet *c, uint32_t server_sub, uint64_t last, uint64_t ticket, uint8_t flags);

/* producer.c */
int check_name(const char *name);
void batch_close(comet *c);
/* Remembers a channel this connection created (reply: CREATE's OK fields). */
void produced_add(comet *c, const uint8_t *reply, size_t len);
void produced_remove(comet *c, uint64_t channel);

/* numbered.c: numbered pushes (PUSH_NUMBERED) with reconnection on: each is kept until answered
 * and sent again, with its numbers, once the channel is taken back. */
struct produced *produced_find(comet *c, uint64_t channel);
/* The channel's producer record when its pushes are numbered (reconnection on, a daemon that
 * takes them, a channel this connection created), else NULL. */
struct produced *numbering(comet *c, uint64_t channel);
/* Keeps the frame just ended at `mark` (the last in the output) for pending push `p`. */
void journal_add(comet *c, struct pending *p, size_t mark);
/* Numbered push `p` was answered (`error` < 0: refused). */
void numbered_answered(comet *c, const struct pending *p, int error);
/* The connection broke: unnumbered requests fail with `error`; numbered pushes wait. */
void pending_keep_numbered(comet *c, int error);
/* On the new connection, after ADOPT: every numbered push without an answer, again, in order. */
int journal_resend(comet *c);

/* connection.c, reconnect.c */
int open_socket(const char *path);
int handshake(comet *c);
/* The connection broke with `error`: with reconnection on, connects again and puts everything
 * back; returns 0 then (the caller's request still fails with `error`), else `error`. */
int reconnect(comet *c, int error);

/* requests.c: requests sent without waiting, and their answers. */
int pending_reserve(comet *c);
struct pending *pending_add(comet *c, uint32_t id, uint8_t kind);
void pending_answered(comet *c, uint32_t id, int error, struct reader *reply);
void pending_fail_all(comet *c, int error);
/* Sends a frame started by request_begin() as request `kind` with completion `done`. */
struct pending *send_async(comet *c, uint32_t id, size_t mark, uint8_t kind, comet_done_handler done, void *userdata);
uint64_t subscription_start(uint64_t next);

#endif
