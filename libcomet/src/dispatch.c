/* libcomet: handing what arrives to the handlers; comet_process(). */
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

/* ---- Dispatch ------------------------------------------------------------------------------- */

struct subscription *find_sub(comet *c, uint32_t server_id) {
        for (size_t i = 0; i < c->sub_count; i++)
                if (c->subs[i].server_id == server_id)
                        return &c->subs[i];
        return NULL;
}

struct subscription *find_local(comet *c, uint32_t id) {
        for (size_t i = 0; i < c->sub_count; i++)
                if (c->subs[i].id == id)
                        return &c->subs[i];
        return NULL;
}

void remove_sub(comet *c, uint32_t id) {
        for (size_t i = 0; i < c->sub_count; i++)
                if (c->subs[i].id == id) {
                        free(c->subs[i].name);
                        ring_release(&c->subs[i].ring);
                        c->subs[i] = c->subs[--c->sub_count];
                        return;
                }
}

int add_sub(comet *c, const struct subscription *s, uint32_t *ret_id) {
        int r = grow((void **)&c->subs, &c->sub_capacity, c->sub_count, sizeof *c->subs);
        if (r < 0)
                return r;
        struct subscription copy = *s;
        /* The application's id is the daemon's first one, unless a reconnect made that one taken. */
        copy.id = copy.server_id;
        while (find_local(c, copy.id) || copy.id == 0)
                copy.id = ++c->next_local_id;
        c->subs[c->sub_count++] = copy;
        if (ret_id)
                *ret_id = copy.id;
        return 0;
}

static struct puller *find_puller(comet *c, uint64_t channel) {
        for (size_t i = 0; i < c->puller_count; i++)
                if (c->pullers[i].channel == channel)
                        return &c->pullers[i];
        return NULL;
}

void remove_puller(comet *c, uint64_t channel) {
        for (size_t i = 0; i < c->puller_count; i++)
                if (c->pullers[i].channel == channel) {
                        c->pullers[i] = c->pullers[--c->puller_count];
                        return;
                }
}

/* Forgets the subscription the daemon knows as `sub` and tells its end handler why (the handler
 * may subscribe again). */
void end_subscription(comet *c, uint32_t sub, comet_end reason, uint64_t value) {
        struct subscription *s = find_sub(c, sub);
        if (!s)
                return;
        struct subscription copy = *s;
        remove_sub(c, copy.id);
        if (copy.on_end)
                copy.on_end(c, copy.id, reason, value, copy.userdata);
}

/* Handles one frame outside a blocking call. Returns < 0 when the connection failed. */
static int dispatch(comet *c, struct reader *r) {
        uint8_t op;
        uint32_t id, sub;
        uint64_t a, b;
        if (get_u8(r, &op) < 0)
                return -EBADMSG;
        switch (op) {
        case OP_OK:
                if (get_u32(r, &id) < 0)
                        return -EBADMSG;
                pending_answered(c, id, 0, r);
                return 0;
        case OP_ERROR: {
                uint16_t code;
                if (get_u32(r, &id) < 0 || get_u16(r, &code) < 0)
                        return -EBADMSG;
                set_error_message(c, r);
                if (id == 0)
                        return -(COMET_E_BASE + code);
                pending_answered(c, id, -(COMET_E_BASE + code), r);
                return 0;
        }
        case OP_MESSAGE: {
                if (get_u32(r, &sub) < 0 || get_u64(r, &a) < 0)
                        return -EBADMSG;
                struct subscription *s = find_sub(c, sub);
                if (!s)
                        return 0;
                /* MESSAGE for a mapped subscription: a new daemon process (live upgrade, planned
                 * restart) serves it over the socket; what the ring announced was read already. */
                if (s->ring.base)
                        ring_release(&s->ring);
                /* Anything at or below the last sequence handed on came again after a reconnect:
                 * dropped (a private one acknowledged again, as it was handled before). */
                if (a <= s->last) {
                        if (s->is_private && a > s->acked)
                                s->acked = a;
                        return 0;
                }
                s->last = a;
                uint32_t sid = s->id;
                int is_private = s->is_private;
                int rc = s->on_message(c, sid, a, r->p, r->left, s->userdata);
                /* The handler may have unsubscribed: look it up again. */
                if (rc >= 0 && is_private && (s = find_local(c, sid)) && a > s->acked)
                        s->acked = a;
                return 0;
        }
        case OP_FULL:
        case OP_CLOSED:
        case OP_RESET: {
                if (get_u32(r, &sub) < 0 || get_u64(r, &a) < 0)
                        return -EBADMSG;
                end_subscription(c, sub, op == OP_FULL ? COMET_END_FULL : op == OP_CLOSED ? COMET_END_CLOSED : COMET_END_RESET, a);
                return 0;
        }
        case OP_STARTED: {
                uint64_t next;
                uint32_t uid, gid;
                if (get_u32(r, &sub) < 0 || get_u64(r, &a) < 0 || get_u64(r, &next) < 0)
                        return -EBADMSG;
                struct subscription *s = find_sub(c, sub);
                if (s) {
                        s->epoch = a;
                        s->last = next ? next - 1 : 0;
                }
                if (s && get_u32(r, &uid) == 0 && get_u32(r, &gid) == 0) {
                        s->owner_uid = uid;
                        s->owner_gid = gid;
                }
                return 0;
        }
        case OP_FAILED: {
                uint16_t code;
                if (get_u32(r, &sub) < 0 || get_u16(r, &code) < 0)
                        return -EBADMSG;
                set_error_message(c, r);
                end_subscription(c, sub, COMET_END_FAILED, COMET_E_BASE + code);
                return 0;
        }
        case OP_OFFER: {
                uint8_t kind;
                char name[256];
                if (get_u64(r, &a) < 0 || get_u8(r, &kind) < 0 || get_u64(r, &b) < 0 || get_str(r, name, sizeof name) < 0)
                        return -EBADMSG;
                if (c->on_offer)
                        c->on_offer(c, a, name, kind, c->offer_userdata);
                return 0;
        }
        case OP_ENDED: {
                uint16_t code;
                if (get_u64(r, &a) < 0 || get_u16(r, &code) < 0)
                        return -EBADMSG;
                set_error_message(c, r);
                remove_puller(c, a);
                if (c->on_error)
                        c->on_error(c, a, -(COMET_E_BASE + code), c->error_userdata);
                return 0;
        }
        case OP_RING_ADVANCED: {
                uint64_t ticket;
                uint8_t flags = 0;
                if (get_u32(r, &sub) < 0 || get_u64(r, &a) < 0 || get_u64(r, &ticket) < 0)
                        return -EBADMSG;
                (void)get_u8(r, &flags);
                return ring_advanced(c, sub, a, ticket, flags);
        }
        case OP_RING_DETACHED: {
                /* Served over the socket from here: MESSAGE frames already read are dropped below. */
                if (get_u32(r, &sub) < 0 || get_u64(r, &a) < 0)
                        return -EBADMSG;
                struct subscription *s = find_sub(c, sub);
                if (s)
                        ring_release(&s->ring);
                return 0;
        }
        case OP_PULL: {
                if (get_u64(r, &a) < 0 || get_u64(r, &b) < 0)
                        return -EBADMSG;
                struct puller *p = find_puller(c, a);
                if (p)
                        p->handler(c, a, b, p->userdata);
                return 0;
        }
        default:
                return -EBADMSG;
        }
}


int fail(comet *c, int error) {
        if (c->reconnecting) {
                /* A reconnect attempt failed: reconnect() tries again or gives up. */
                if (!c->failed)
                        c->failed = error;
                return error;
        }
        if (!c->failed && c->reconnect && reconnect(c, error) == 0) {
                c->reconnected = 1;
                return error;
        }
        if (!c->failed)
                c->failed = error;
        /* Every request still unanswered completes with the error; every subscription learns that
         * the connection ended. */
        pending_fail_all(c, c->failed);
        while (c->sub_count > 0) {
                struct subscription s = c->subs[c->sub_count - 1];
                c->sub_count--;
                free(s.name);
                if (s.on_end)
                        s.on_end(c, s.id, COMET_END_CONNECTION, 0, s.userdata);
        }
        return c->failed;
}

/* comet_process() after a failure: 2 if the connection was made again (reconnect.c), else the error. */
static int process_failed(comet *c, int error) {
        int r = fail(c, error);
        if (c->reconnected) {
                c->reconnected = 0;
                return 2;
        }
        return r;
}

/* Dispatches every whole frame received so far, oldest first: frames a blocking call set aside
 * (even one made from inside a handler) always precede those still in the input buffer. */
static int dispatch_all(comet *c, int *did) {
        for (;;) {
                struct reader body;
                int r = next_frame(c, &c->backlog, &body);
                if (r == 0)
                        r = next_frame(c, &c->in, &body);
                if (r <= 0)
                        return r;
                *did = 1;
                c->dispatching++;
                r = dispatch(c, &body);
                c->dispatching--;
                if (r < 0)
                        return r;
                if (c->failed)
                        return c->failed;
        }
}

/* Whether `b` holds a whole frame. */
COMET_PUBLIC int comet_process(comet *c) {
        if (!c)
                return -EINVAL;
        if (c->failed)
                return c->failed;
        int did = 0, r;
        size_t before = buf_len(&c->out);
        if ((r = write_some(c)) < 0)
                return process_failed(c, r);
        if (buf_len(&c->out) != before)
                did = 1;
        if ((r = dispatch_all(c, &did)) < 0)
                return process_failed(c, r);
        int n = read_some(c);
        if (n > 0)
                did = 1;
        if ((r = dispatch_all(c, &did)) < 0)
                return process_failed(c, r);
        if (n < 0)
                return process_failed(c, n);
        if ((r = queue_acks(c)) < 0 || (r = write_some(c)) < 0)
                return process_failed(c, r);
        if (c->reconnected) {
                c->reconnected = 0;
                return 2;
        }
        return did;
}

int queue_acks(comet *c) {
        for (size_t i = 0; i < c->sub_count; i++) {
                struct subscription *s = &c->subs[i];
                /* Private channels' acknowledgements, and how far mapped readers read when asked. */
                if ((!s->is_private && !s->ring.base) || s->acked <= s->ack_sent)
                        continue;
                int r = pending_reserve(c);
                uint32_t id;
                size_t mark;
                if (r < 0 || (r = request_begin(c, OP_ACK, &id, &mark)) < 0 || (r = put_u32(&c->out, s->server_id)) < 0 ||
                    (r = put_u64(&c->out, s->acked)) < 0)
                        return r;
                send_async(c, id, mark, REQ_ACK, NULL, NULL);
                s->ack_sent = s->acked;
        }
        return 0;
}
