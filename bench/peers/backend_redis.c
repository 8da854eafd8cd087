/* Redis pub/sub over its unix socket, through hiredis: PUBLISH pipelined, SUBSCRIBE. */
#include "backend.h"

#include <hiredis.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

struct pub {
        redisContext *c;
        char topic[128];
        int pending; /* PUBLISH replies not read yet */
};

struct sub {
        redisContext *c;
};

static struct pub *pub_open(const char *address, const char *topic, int low_latency) {
        (void)low_latency;
        struct pub *p = calloc(1, sizeof *p);
        p->c = redisConnectUnix(address);
        if (!p->c || p->c->err) {
                if (p->c)
                        redisFree(p->c);
                free(p);
                return NULL;
        }
        strncpy(p->topic, topic, sizeof p->topic - 1);
        return p;
}

static int pub_ready(struct pub *p, int subscribers) {
        (void)p, (void)subscribers;
        return 0;
}

/* Reads `n` PUBLISH replies (blocking; hiredis writes what is queued first). */
static int read_replies(struct pub *p, int n) {
        for (; n > 0; n--, p->pending--) {
                void *reply;
                if (redisGetReply(p->c, &reply) != REDIS_OK)
                        return -1;
                freeReplyObject(reply);
        }
        return 0;
}

static int publish(struct pub *p, const void *data, size_t size) {
        if (redisAppendCommand(p->c, "PUBLISH %s %b", p->topic, data, size) != REDIS_OK)
                return -1;
        /* A pipeline of at most 4096 unanswered commands. */
        if (++p->pending >= 4096)
                return read_replies(p, 2048);
        return 0;
}

static int pub_kick(struct pub *p) {
        int done = 0;
        while (!done)
                if (redisBufferWrite(p->c, &done) != REDIS_OK)
                        return -1;
        return p->pending >= 256 ? read_replies(p, p->pending - 64) : 0;
}

static int pub_flush(struct pub *p) { return read_replies(p, p->pending); }

static void pub_close(struct pub *p) {
        redisFree(p->c);
        free(p);
}

static struct sub *sub_open(const char *address, const char *topic) {
        struct sub *s = calloc(1, sizeof *s);
        s->c = redisConnectUnix(address);
        redisReply *reply = s->c && !s->c->err ? redisCommand(s->c, "SUBSCRIBE %s", topic) : NULL;
        if (!reply) {
                if (s->c)
                        redisFree(s->c);
                free(s);
                return NULL;
        }
        freeReplyObject(reply);
        return s;
}

/* Hands every whole reply already read to `fn`. */
static int drain(struct sub *s, message_fn fn, void *ctx) {
        int n = 0;
        for (;;) {
                redisReply *reply = NULL;
                if (redisGetReplyFromReader(s->c, (void **)&reply) != REDIS_OK)
                        return -1;
                if (!reply)
                        return n;
                if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 && reply->element[2]->type == REDIS_REPLY_STRING) {
                        fn(ctx, (const uint8_t *)reply->element[2]->str, reply->element[2]->len);
                        n++;
                }
                freeReplyObject(reply);
        }
}

static int sub_next(struct sub *s, int timeout_ms, message_fn fn, void *ctx) {
        int n = drain(s, fn, ctx);
        if (n != 0)
                return n;
        struct pollfd pfd = {.fd = s->c->fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
                return 0;
        if (redisBufferRead(s->c) != REDIS_OK)
                return -1; /* disconnected (e.g. past client-output-buffer-limit) */
        return drain(s, fn, ctx);
}

static void sub_close(struct sub *s) {
        redisFree(s->c);
        free(s);
}

const struct backend redis_backend = {"redis", pub_open, pub_ready, publish, pub_kick, pub_flush, pub_close,
                                      sub_open, sub_next, sub_close};
