/* libcomet internals shared by its source files (never installed). */
#ifndef COMET_INTERNAL_H
#define COMET_INTERNAL_H

#include "comet.h"

#include "buffer.h"

enum {
        OP_HELLO = 0x01, OP_CREATE = 0x02, OP_PUSH = 0x03, OP_CLOSE = 0x05, OP_SUBSCRIBE = 0x06,
        OP_UNSUBSCRIBE = 0x07, OP_RESUME = 0x0A, OP_CREATE_PRIVATE = 0x0B, OP_ACK = 0x0C, OP_ANSWER = 0x0E,
        OP_WAIT_TIMEOUT = 0x0F, OP_SUBSCRIBE_EXTERNAL = 0x10,
        OP_OK = 0x80, OP_ERROR = 0x81,
        OP_MESSAGE = 0x90, OP_FULL = 0x91, OP_CLOSED = 0x92, OP_STARTED = 0x93, OP_OFFER = 0x94, OP_ENDED = 0x95,
        OP_PULL = 0x96, OP_RESET = 0x97, OP_FAILED = 0x98,
};

#define OUTPUT_LIMIT (4u << 20)
#define DEFAULT_MAX_FRAME (1u << 20)

struct subscription {
        uint32_t id;
        int is_private;
        uint64_t acked;   /* highest sequence acknowledged by the handler */
        uint64_t ack_sent; /* highest sequence sent in an ACK */
        comet_message_handler on_message;
        comet_end_handler on_end;
        void *userdata;
        uint32_t owner_uid, owner_gid; /* the channel's creator; 0xffffffff when not known */
};

struct puller {
        uint64_t channel;
        comet_pull_handler handler;
        void *userdata;
};

/* A request sent without waiting: its answer is matched in order. */
struct async_request {
        uint32_t id;
        uint64_t channel;
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
        struct async_request *async;
        size_t async_count, async_capacity;
        struct subscription *subs;
        size_t sub_count, sub_capacity;
        struct puller *pullers;
        size_t puller_count, puller_capacity;
        comet_offer_handler on_offer;
        void *offer_userdata;
        comet_error_handler on_error;
        void *error_userdata;
        char last_error[1024];
};

/* io.c: the socket, framing, blocking waits. */
uint64_t now_usec(void);
int grow(void **array, size_t *capacity, size_t count, size_t element);
int write_some(comet *c);
int wait_fd(comet *c, short events, uint64_t timeout_usec);
int read_some(comet *c);
int next_frame(comet *c, struct buf *b, struct reader *body);
int has_frame(const struct buf *b);
void set_error_message(comet *c, struct reader *r);
int await_answer(comet *c, uint32_t id, uint8_t *reply, size_t reply_size, size_t *reply_len);
uint64_t be64(const uint8_t *p);
uint32_t be32(const uint8_t *p);
int request_begin(comet *c, uint8_t op, uint32_t *id, size_t *mark);

/* dispatch.c: handing what arrives to the handlers. */
struct subscription *find_sub(comet *c, uint32_t id);
void remove_sub(comet *c, uint32_t id);
void remove_puller(comet *c, uint64_t channel);
int fail(comet *c, int error);
int queue_acks(comet *c);

/* producer.c */
int check_name(const char *name);

#endif
