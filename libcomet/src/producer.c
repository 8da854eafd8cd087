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
        uint8_t reply[32];
        size_t len = 0;
        int r = await_answer(c, id, reply, sizeof reply, &len);
        if (r < 0)
                return r;
        if (len < 16)
                return -EBADMSG;
        produced_add(c, reply, len);
        if (ret_channel)
                *ret_channel = be64(reply);
        return 0;
}

void produced_add(comet *c, const uint8_t *reply, size_t len) {
        /* channel u64, epoch u64, then the producer token (daemons from 0.5) */
        if (len < 32 || grow((void **)&c->produced, &c->produced_capacity, c->produced_count, sizeof *c->produced) < 0)
                return;
        struct produced *p = &c->produced[c->produced_count++];
        p->channel = be64(reply);
        memcpy(p->token, reply + 16, 16);
        p->next_number = 1;
}

void produced_remove(comet *c, uint64_t channel) {
        for (size_t i = 0; i < c->produced_count; i++)
                if (c->produced[i].channel == channel) {
                        c->produced[i] = c->produced[--c->produced_count];
                        return;
                }
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

/* ---- Pushes without waiting ---------------------------------------------------------------- */

/* Offset of a PUSH_BATCH's count field from its frame's start: length, op, id, channel. */
#define BATCH_COUNT_AT (4 + 1 + 4 + 8)

/* Ends the PUSH_BATCH or PUSH_NUMBERED being filled (its length and count are written in); a
 * numbered one is kept in the journal. */
void batch_close(comet *c) {
        if (!c->batch_open)
                return;
        set_be32(c->out.data + c->out.start + c->batch_mark + c->batch_count_at, c->batch_count);
        frame_end(&c->out, c->batch_mark);
        c->batch_open = 0;
        /* The batch's request is the newest pending one (any other request closes it first). */
        struct pending *last = &c->pending[(c->pending_head + c->pending_count - 1) % c->pending_capacity];
        if (last->numbered)
                journal_add(c, last, c->batch_mark);
}

/* Makes room in the output for more. Each time WRITE_THRESHOLD more bytes are queued, writes
 * what the socket takes of the frames before the batch being filled (which keeps filling: a
 * daemon slower than this publisher then gets full batches, not one frame per push). Past
 * OUTPUT_LIMIT, writes everything it can; -EAGAIN when that stays above the limit. */
static int output_room(comet *c) {
        if (c->failed)
                return c->failed;
        size_t queued = buf_len(&c->out);
        if (queued < c->next_write_at && queued <= OUTPUT_LIMIT)
                return 0;
        int r = queued > OUTPUT_LIMIT ? write_some(c) : write_before(c, c->batch_open ? c->batch_mark : queued);
        if (r < 0)
                return fail(c, r);
        c->next_write_at = buf_len(&c->out) + WRITE_THRESHOLD;
        return buf_len(&c->out) > OUTPUT_LIMIT ? -EAGAIN : 0;
}

/* Appends one message for `channel`: to the batch being filled if it is for the same channel
 * and has room, else in a new one (a message too large for a batch goes alone in a PUSH, or in
 * a PUSH_NUMBERED of one when the channel's pushes are numbered). */
static int append_push(comet *c, uint64_t channel, const void *data, size_t size) {
        int r;
        struct produced *pr = numbering(c, channel);
        if (c->batch_open && c->batch_channel == channel && c->batch_count < UINT32_MAX &&
            buf_len(&c->out) - c->batch_mark + 4 + size <= BATCH_LIMIT) {
                /* The common case, once per message: one reservation, no division. */
                if ((r = buf_reserve(&c->out, 4 + size)) < 0)
                        return r;
                set_be32(c->out.data + c->out.end, (uint32_t)size);
                if (size > 0)
                        memcpy(c->out.data + c->out.end + 4, data, size);
                c->out.end += 4 + size;
                c->batch_count++;
                size_t newest = c->pending_head + c->pending_count - 1;
                c->pending[newest >= c->pending_capacity ? newest - c->pending_capacity : newest].count++;
                if (pr)
                        pr->next_number++;
                return 0;
        }
        uint32_t id;
        size_t mark;
        size_t count_at = BATCH_COUNT_AT + (pr ? 8 : 0);
        int alone = 4 + count_at + 4 + size > BATCH_LIMIT;
        uint8_t op = pr ? OP_PUSH_NUMBERED : alone ? OP_PUSH : OP_PUSH_BATCH;
        if ((r = pending_reserve(c)) < 0 || (r = request_begin(c, op, &id, &mark)) < 0 || (r = put_u64(&c->out, channel)) < 0 ||
            (pr && (r = put_u64(&c->out, pr->next_number)) < 0))
                return r;
        if (alone && !pr) {
                if ((r = buf_append(&c->out, data, size)) < 0)
                        return r;
                frame_end(&c->out, mark);
        } else {
                if ((r = put_u32(&c->out, alone ? 1 : 0)) < 0 || (r = put_u32(&c->out, (uint32_t)size)) < 0 ||
                    (r = buf_append(&c->out, data, size)) < 0)
                        return r;
                if (!alone) {
                        c->batch_open = 1;
                        c->batch_mark = mark;
                        c->batch_count_at = count_at;
                        c->batch_channel = channel;
                        c->batch_count = 1;
                } else {
                        frame_end(&c->out, mark);
                }
        }
        struct pending *p = pending_add(c, id, REQ_PUSH);
        p->channel = channel;
        if (pr) {
                p->numbered = 1;
                p->number = pr->next_number++;
                if (alone)
                        journal_add(c, p, mark);
        }
        return 0;
}

/* Bytes a push's frame takes besides its payload: PUSH, or PUSH_NUMBERED of one message. */
static size_t push_overhead(comet *c, uint64_t channel) { return numbering(c, channel) ? 29 : 13; }

COMET_PUBLIC int comet_push(comet *c, uint64_t channel, const void *data, size_t size) {
        if (!c || (!data && size > 0))
                return -EINVAL;
        if (size > c->max_frame - push_overhead(c, channel))
                return -EMSGSIZE;
        int r = output_room(c);
        return r < 0 ? r : append_push(c, channel, data, size);
}

COMET_PUBLIC int comet_push_batch(comet *c, uint64_t channel, const comet_message *messages, size_t count) {
        if (!c || (!messages && count > 0))
                return -EINVAL;
        size_t most = c->max_frame - push_overhead(c, channel);
        for (size_t i = 0; i < count; i++)
                if ((!messages[i].data && messages[i].size > 0) || messages[i].size > most)
                        return messages[i].size > most ? -EMSGSIZE : -EINVAL;
        int r = output_room(c);
        for (size_t i = 0; r == 0 && i < count; i++)
                r = append_push(c, channel, messages[i].data, messages[i].size);
        return r;
}

/* Queues a PUSH (`pull` NULL; a PUSH_NUMBERED of one when the channel's pushes are numbered) or
 * an ANSWER as a frame of its own, its answer going to `kind`/`done`. */
static int queue_single(comet *c, uint8_t op, uint64_t channel, const uint64_t *pull, const void *data, size_t size,
                        uint8_t kind, comet_done_handler done, void *userdata) {
        if (!c || (!data && size > 0))
                return -EINVAL;
        struct produced *pr = pull ? NULL : numbering(c, channel);
        if (size > c->max_frame - (pull ? 21 : push_overhead(c, channel)))
                return -EMSGSIZE;
        uint32_t id;
        size_t mark;
        int r = output_room(c);
        if (r < 0 || (r = pending_reserve(c)) < 0 || (r = request_begin(c, pr ? OP_PUSH_NUMBERED : op, &id, &mark)) < 0 ||
            (r = put_u64(&c->out, channel)) < 0 || (pull && (r = put_u64(&c->out, *pull)) < 0) ||
            (pr && ((r = put_u64(&c->out, pr->next_number)) < 0 || (r = put_u32(&c->out, 1)) < 0 ||
                    (r = put_u32(&c->out, (uint32_t)size)) < 0)) ||
            (r = buf_append(&c->out, data, size)) < 0)
                return r;
        struct pending *p = send_async(c, id, mark, kind, done, userdata);
        p->channel = channel;
        if (pr) {
                p->numbered = 1;
                p->number = pr->next_number++;
                journal_add(c, p, mark);
        }
        return 0;
}

COMET_PUBLIC int comet_answer(comet *c, uint64_t channel, uint64_t pull, const void *data, size_t size) {
        return queue_single(c, OP_ANSWER, channel, &pull, data, size, REQ_ANSWER, NULL, NULL);
}

COMET_PUBLIC int comet_push_async(comet *c, uint64_t channel, const void *data, size_t size, comet_done_handler done,
                                  void *userdata) {
        return queue_single(c, OP_PUSH, channel, NULL, data, size, REQ_PUSH_SEQ, done, userdata);
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
        produced_remove(c, channel);
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

/* ---- Producer requests without waiting ----------------------------------------------------- */

static struct pending *create_async(comet *c, const char *name, uint8_t op, uint8_t kind, uint64_t session, uint32_t size,
                                    uint8_t request, comet_done_handler done, void *userdata, int *error) {
        uint32_t id;
        size_t mark;
        int r = !c ? -EINVAL : check_name(name);
        if (r < 0 || (r = pending_reserve(c)) < 0 || (r = request_begin(c, op, &id, &mark)) < 0 ||
            (r = put_u8(&c->out, kind)) < 0 || (r = put_u32(&c->out, size)) < 0 ||
            (op == OP_CREATE_PRIVATE && (r = put_u64(&c->out, session)) < 0) || (r = put_str(&c->out, name)) < 0) {
                *error = r;
                return NULL;
        }
        return send_async(c, id, mark, request, done, userdata);
}

COMET_PUBLIC int comet_create_async(comet *c, const char *name, uint32_t size, comet_done_handler done, void *userdata) {
        int r = 0;
        create_async(c, name, OP_CREATE, 0, 0, size, REQ_CREATE, done, userdata, &r);
        return r;
}

COMET_PUBLIC int comet_create_newest_async(comet *c, const char *name, comet_done_handler done, void *userdata) {
        int r = 0;
        create_async(c, name, OP_CREATE, 1, 0, 1, REQ_CREATE, done, userdata, &r);
        return r;
}

COMET_PUBLIC int comet_create_private_async(comet *c, const char *name, uint64_t session, uint32_t size,
                                            comet_done_handler done, void *userdata) {
        int r = 0;
        create_async(c, name, OP_CREATE_PRIVATE, 2, session, size, REQ_CREATE, done, userdata, &r);
        return r;
}

COMET_PUBLIC int comet_create_unlimited_async(comet *c, const char *name, uint64_t session, comet_pull_handler handler,
                                              void *pull_userdata, comet_done_handler done, void *userdata) {
        if (!handler)
                return -EINVAL;
        int r = 0;
        struct pending *p = create_async(c, name, OP_CREATE_PRIVATE, 3, session, 1, REQ_CREATE_UNLIMITED, done, userdata, &r);
        if (p) {
                p->on_pull = handler;
                p->userdata = pull_userdata;
        }
        return r;
}

COMET_PUBLIC int comet_close_channel_async(comet *c, uint64_t channel, comet_done_handler done, void *userdata) {
        if (!c)
                return -EINVAL;
        uint32_t id;
        size_t mark;
        int r = pending_reserve(c);
        if (r < 0 || (r = request_begin(c, OP_CLOSE, &id, &mark)) < 0 || (r = put_u64(&c->out, channel)) < 0)
                return r;
        send_async(c, id, mark, REQ_CLOSE, done, userdata)->channel = channel;
        return 0;
}

COMET_PUBLIC int comet_wait_timeout_async(comet *c, uint64_t session, uint64_t timeout_ms, comet_done_handler done,
                                          void *userdata) {
        if (!c)
                return -EINVAL;
        uint32_t id;
        size_t mark;
        int r = pending_reserve(c);
        if (r < 0 || (r = request_begin(c, OP_WAIT_TIMEOUT, &id, &mark)) < 0 || (r = put_u64(&c->out, session)) < 0 ||
            (r = put_u64(&c->out, timeout_ms)) < 0)
                return r;
        send_async(c, id, mark, REQ_WAIT_TIMEOUT, done, userdata);
        return 0;
}
