/* libcomet: requests sent without waiting, matched with their answers in O(1). */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for one more pending request (so that adding it after a frame is written cannot fail). */
int pending_reserve(comet *c) {
        if (c->pending_count < c->pending_capacity)
                return 0;
        size_t capacity = c->pending_capacity ? c->pending_capacity * 2 : 64;
        struct pending *p = malloc(capacity * sizeof *p);
        if (!p)
                return -ENOMEM;
        /* Unwrap the ring into the new array, oldest first. */
        for (size_t i = 0; i < c->pending_count; i++)
                p[i] = c->pending[(c->pending_head + i) % c->pending_capacity];
        free(c->pending);
        c->pending = p;
        c->pending_head = 0;
        c->pending_capacity = capacity;
        return 0;
}

/* Appends a pending request (room reserved by pending_reserve()). */
struct pending *pending_add(comet *c, uint32_t id, uint8_t kind) {
        if (pending_reserve(c) < 0)
                return NULL;
        struct pending *p = &c->pending[(c->pending_head + c->pending_count++) % c->pending_capacity];
        memset(p, 0, sizeof *p);
        p->id = id;
        p->kind = kind;
        p->count = 1;
        return p;
}

struct pending *send_async(comet *c, uint32_t id, size_t mark, uint8_t kind, comet_done_handler done, void *userdata) {
        frame_end(&c->out, mark);
        struct pending *p = pending_add(c, id, kind);
        if (p) {
                p->done = done;
                p->done_userdata = userdata;
        }
        return p;
}

/* Drops answered entries from the front of the ring. */
static void pending_trim(comet *c) {
        while (c->pending_count > 0 && c->pending[c->pending_head].id == 0) {
                c->pending_head = (c->pending_head + 1) % c->pending_capacity;
                c->pending_count--;
        }
        if (c->pending_count == 0)
                c->pending_head = 0;
}

/* Takes the entry of request `id` out of the ring into `*ret`. Returns 1 if found. */
static int pending_take(comet *c, uint32_t id, struct pending *ret) {
        for (size_t i = 0; i < c->pending_count; i++) {
                struct pending *p = &c->pending[(c->pending_head + i) % c->pending_capacity];
                if (p->id != id)
                        continue;
                *ret = *p;
                p->id = 0;
                p->name = NULL;
                pending_trim(c);
                return 1;
        }
        return 0;
}

uint64_t subscription_start(uint64_t next) { return next ? next - 1 : 0; }

/* Registers a subscription the daemon accepted (reply: SUBSCRIBE's OK fields). */
static int add_subscription(comet *c, const struct pending *p, struct reader *reply, uint32_t *ret_id) {
        uint32_t sub, uid = UINT32_MAX, gid = UINT32_MAX;
        uint8_t waiting;
        uint64_t epoch, next;
        if (get_u32(reply, &sub) < 0 || get_u8(reply, &waiting) < 0 || get_u64(reply, &epoch) < 0 || get_u64(reply, &next) < 0)
                return -EBADMSG;
        if (get_u32(reply, &uid) < 0 || get_u32(reply, &gid) < 0)
                uid = gid = UINT32_MAX; /* a daemon before owners */
        struct subscription s = {
                .server_id = sub, .is_private = p->is_private, .acked = subscription_start(next),
                .ack_sent = subscription_start(next), .name = p->name, .flags = p->flags, .pinned_owner = p->pinned_owner, .epoch = epoch,
                .last = subscription_start(next), .on_message = p->on_message, .on_end = p->on_end, .userdata = p->userdata,
                .owner_uid = uid, .owner_gid = gid};
        return add_sub(c, &s, ret_id);
}

/* Hands the answer to request `id` (error < 0: refused, else OK with `reply`) to whoever waits for it. */
void pending_answered(comet *c, uint32_t id, int error, struct reader *reply) {
        struct pending p;
        if (!pending_take(c, id, &p))
                return;
        if (p.numbered)
                numbered_answered(c, &p, error);
        uint64_t value = 0;
        if (error == 0) {
                switch (p.kind) {
                case REQ_PUSH_SEQ:
                        if (get_u64(reply, &value) < 0)
                                error = -EBADMSG;
                        break;
                case REQ_CREATE:
                case REQ_CREATE_UNLIMITED:
                        produced_add(c, reply->p, reply->left);
                        if (get_u64(reply, &value) < 0) {
                                error = -EBADMSG;
                        } else if (p.kind == REQ_CREATE_UNLIMITED) {
                                int r = grow((void **)&c->pullers, &c->puller_capacity, c->puller_count, sizeof *c->pullers);
                                if (r < 0)
                                        error = r;
                                else
                                        c->pullers[c->puller_count++] =
                                                (struct puller){.channel = value, .handler = p.on_pull, .userdata = p.userdata};
                        }
                        break;
                case REQ_SUBSCRIBE: {
                        uint32_t sub = 0;
                        error = add_subscription(c, &p, reply, &sub);
                        if (error == 0)
                                p.name = NULL; /* the subscription has it now */
                        value = sub;
                        break;
                }
                case REQ_CLOSE:
                        remove_puller(c, p.channel);
                        produced_remove(c, p.channel);
                        break;
                case REQ_RESUME:
                        c->session = p.session;
                        break;
                case REQ_WAIT_TIMEOUT: {
                        uint8_t reason = 0;
                        value = get_u8(reply, &reason) == 0 && reason == 1;
                        break;
                }
                default:
                        break;
                }
        }
        free(p.name);
        if (p.done) {
                c->dispatching++;
                p.done(c, error, value, p.done_userdata);
                c->dispatching--;
                return;
        }
        if (error < 0 && c->on_error && (p.kind == REQ_PUSH || p.kind == REQ_ANSWER || p.kind == REQ_ACK)) {
                /* One call per comet_push() the refused frame carried. */
                for (uint32_t i = 0; i < p.count && !c->failed; i++)
                        c->on_error(c, p.channel, error, c->error_userdata);
        }
}

/* The connection failed: every request still waiting for an answer completes with `error`. */
void pending_fail_all(comet *c, int error) {
        while (c->pending_count > 0) {
                struct pending p = c->pending[c->pending_head];
                c->pending_head = (c->pending_head + 1) % c->pending_capacity;
                c->pending_count--;
                if (p.id != 0)
                        free(p.name);
                if (p.id != 0 && p.done)
                        p.done(c, error, 0, p.done_userdata);
        }
        c->pending_head = 0;
        buf_clear(&c->journal);
}
