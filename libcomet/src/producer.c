/* libcomet: producers. */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

/* ---- Producers ------------------------------------------------------------------------------ */

int check_name(const char *name) {
        if (!name || !*name || strlen(name) > 255)
                return -COMET_E_INVALID_NAME;
        return 0;
}

static int create_reply(comet *c, uint32_t id, uint64_t *ret_channel) {
        uint8_t reply[16];
        size_t len = 0;
        int r = await_answer(c, id, reply, sizeof reply, &len);
        if (r < 0)
                return r;
        if (len < 16)
                return -EBADMSG;
        if (ret_channel)
                *ret_channel = be64(reply);
        return 0;
}

static int create_site(comet *c, const char *name, uint8_t kind, uint32_t size, uint64_t *ret_channel) {
        if (!c)
                return -EINVAL;
        int r = check_name(name);
        uint32_t id;
        size_t mark;
        if (r < 0 || (r = request_begin(c, OP_CREATE, &id, &mark)) < 0)
                return r;
        if ((r = put_u8(&c->out, kind)) < 0 || (r = put_u32(&c->out, size)) < 0 || (r = put_str(&c->out, name)) < 0)
                return r;
        frame_end(&c->out, mark);
        return create_reply(c, id, ret_channel);
}

COMET_PUBLIC int comet_create(comet *c, const char *name, uint32_t size, uint64_t *ret_channel) {
        return create_site(c, name, 0, size, ret_channel);
}

COMET_PUBLIC int comet_create_newest(comet *c, const char *name, uint64_t *ret_channel) {
        return create_site(c, name, 1, 1, ret_channel);
}

static int create_private(comet *c, const char *name, uint8_t kind, uint64_t session, uint32_t size, uint64_t *ret_channel) {
        if (!c)
                return -EINVAL;
        int r = check_name(name);
        uint32_t id;
        size_t mark;
        if (r < 0 || (r = request_begin(c, OP_CREATE_PRIVATE, &id, &mark)) < 0)
                return r;
        if ((r = put_u8(&c->out, kind)) < 0 || (r = put_u32(&c->out, size)) < 0 || (r = put_u64(&c->out, session)) < 0 ||
            (r = put_str(&c->out, name)) < 0)
                return r;
        frame_end(&c->out, mark);
        return create_reply(c, id, ret_channel);
}

COMET_PUBLIC int comet_create_private(comet *c, const char *name, uint64_t session, uint32_t size, uint64_t *ret_channel) {
        return create_private(c, name, 2, session, size, ret_channel);
}

COMET_PUBLIC int comet_create_unlimited(comet *c, const char *name, uint64_t session, comet_pull_handler handler,
                                        void *userdata, uint64_t *ret_channel) {
        if (!c || !handler)
                return -EINVAL;
        int r = grow((void **)&c->pullers, &c->puller_capacity, c->puller_count, sizeof *c->pullers);
        uint64_t channel;
        if (r < 0 || (r = create_private(c, name, 3, session, 1, &channel)) < 0)
                return r;
        /* Any PULL for it arrived after the answer, so it is still unread or set aside. */
        c->pullers[c->puller_count++] = (struct puller){.channel = channel, .handler = handler, .userdata = userdata};
        if (ret_channel)
                *ret_channel = channel;
        return 0;
}

/* Queues a PUSH or an ANSWER; the answer is matched later. */
static int queue_message(comet *c, uint8_t op, uint64_t channel, const uint64_t *pull, const void *data, size_t size) {
        if (!c || (!data && size > 0))
                return -EINVAL;
        if (c->failed)
                return c->failed;
        if (size > c->max_frame - (op == OP_PUSH ? 13 : 21))
                return -EMSGSIZE;
        if (buf_len(&c->out) > OUTPUT_LIMIT) {
                int r = write_some(c);
                if (r < 0)
                        return fail(c, r);
                if (buf_len(&c->out) > OUTPUT_LIMIT)
                        return -EAGAIN;
        }
        int r = grow((void **)&c->async, &c->async_capacity, c->async_count, sizeof *c->async);
        uint32_t id;
        size_t mark;
        if (r < 0 || (r = request_begin(c, op, &id, &mark)) < 0)
                return r;
        if ((r = put_u64(&c->out, channel)) < 0 || (pull && (r = put_u64(&c->out, *pull)) < 0) ||
            (r = buf_append(&c->out, data, size)) < 0)
                return r;
        frame_end(&c->out, mark);
        c->async[c->async_count++] = (struct async_request){.id = id, .channel = channel};
        return 0;
}

COMET_PUBLIC int comet_push(comet *c, uint64_t channel, const void *data, size_t size) {
        return queue_message(c, OP_PUSH, channel, NULL, data, size);
}

COMET_PUBLIC int comet_answer(comet *c, uint64_t channel, uint64_t pull, const void *data, size_t size) {
        return queue_message(c, OP_ANSWER, channel, &pull, data, size);
}

/* Sends a request whose answer must be awaited while async ones may still be outstanding:
 * their answers come first and are set aside, then matched by comet_process(). */
COMET_PUBLIC int comet_push_sync(comet *c, uint64_t channel, const void *data, size_t size, uint64_t *ret_sequence) {
        if (!c || (!data && size > 0))
                return -EINVAL;
        if (size > c->max_frame - 13)
                return -EMSGSIZE;
        uint32_t id;
        size_t mark;
        int r = request_begin(c, OP_PUSH, &id, &mark);
        if (r < 0 || (r = put_u64(&c->out, channel)) < 0 || (r = buf_append(&c->out, data, size)) < 0)
                return r;
        frame_end(&c->out, mark);
        uint8_t reply[12];
        size_t len = 0;
        if ((r = await_answer(c, id, reply, sizeof reply, &len)) < 0)
                return r;
        if (len < 12)
                return -EBADMSG;
        if (ret_sequence)
                *ret_sequence = be64(reply);
        return 0;
}

COMET_PUBLIC int comet_close_channel(comet *c, uint64_t channel) {
        if (!c)
                return -EINVAL;
        uint32_t id;
        size_t mark;
        int r = request_begin(c, OP_CLOSE, &id, &mark);
        if (r < 0 || (r = put_u64(&c->out, channel)) < 0)
                return r;
        frame_end(&c->out, mark);
        if ((r = await_answer(c, id, NULL, 0, NULL)) < 0)
                return r;
        remove_puller(c, channel);
        return 0;
}

COMET_PUBLIC int comet_wait_timeout(comet *c, uint64_t session, uint64_t timeout_ms, int *ret_ended) {
        if (!c)
                return -EINVAL;
        uint32_t id;
        size_t mark;
        int r = request_begin(c, OP_WAIT_TIMEOUT, &id, &mark);
        if (r < 0 || (r = put_u64(&c->out, session)) < 0 || (r = put_u64(&c->out, timeout_ms)) < 0)
                return r;
        frame_end(&c->out, mark);
        uint8_t reason = 0;
        size_t len = 0;
        if ((r = await_answer(c, id, &reason, 1, &len)) < 0)
                return r;
        if (ret_ended)
                *ret_ended = len == 1 && reason == 1;
        return 0;
}
