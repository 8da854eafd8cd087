/* libcomet: PING (a barrier), LIST and SESSIONS. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

COMET_PUBLIC int comet_ping_async(comet *c, comet_done_handler done, void *userdata) {
        if (!c)
                return -EINVAL;
        uint32_t id;
        size_t mark;
        int r = pending_reserve(c);
        if (r < 0 || (r = request_begin(c, OP_PING, &id, &mark)) < 0)
                return r;
        send_async(c, id, mark, REQ_PING, done, userdata);
        return 0;
}

struct ping_state {
        int done;
        int result;
};

static void ping_done(comet *c, int result, uint64_t value, void *userdata) {
        (void)c, (void)value;
        struct ping_state *s = userdata;
        s->done = 1;
        s->result = result;
}

COMET_PUBLIC int comet_ping(comet *c) {
        if (!c)
                return -EINVAL;
        if (c->dispatching)
                return -EBUSY;
        struct ping_state s = {0, 0};
        int r = comet_ping_async(c, ping_done, &s);
        while (r >= 0 && !s.done) {
                r = comet_process(c);
                if (r == 0 && !s.done)
                        r = comet_wait(c, UINT64_MAX);
        }
        return s.done ? s.result : r;
}

/* Sends a LIST/SESSIONS request (already written after request_begin) and waits for its reply,
 * read into a buffer of the largest frame. */
static int query(comet *c, uint32_t id, size_t mark, uint8_t **ret, size_t *ret_len) {
        frame_end(&c->out, mark);
        uint8_t *reply = malloc(c->max_frame);
        if (!reply)
                return -ENOMEM;
        int r = await_answer(c, id, reply, c->max_frame, ret_len);
        if (r < 0) {
                free(reply);
                return r;
        }
        *ret = reply;
        return 0;
}

/* Appends one page of LIST's reply to `*list`. Sets *more when entries follow. */
static int parse_channels(struct reader *r, comet_channel_info **list, size_t *count, size_t *capacity, int *more) {
        uint32_t n;
        if (get_u32(r, &n) < 0)
                return -EBADMSG;
        size_t first = *count;
        for (uint32_t i = 0; i < n; i++) {
                if (grow((void **)list, capacity, *count, sizeof **list) < 0)
                        return -ENOMEM;
                comet_channel_info *e = &(*list)[*count];
                memset(e, 0, sizeof *e);
                if (get_str(r, e->name, sizeof e->name) < 0 || get_u8(r, &e->kind) < 0 || get_u8(r, &e->scope) < 0 ||
                    get_u32(r, &e->size) < 0 || get_u32(r, &e->buffered) < 0 || get_u32(r, &e->subscribers) < 0 ||
                    get_u64(r, &e->last_sequence) < 0 || get_u64(r, &e->epoch) < 0)
                        return -EBADMSG;
                e->owner_uid = e->owner_gid = UINT32_MAX;
                (*count)++;
        }
        uint8_t m = 0;
        if (get_u8(r, &m) < 0)
                m = 0; /* a daemon before paging */
        *more = m == 1 && n > 0;
        for (size_t i = first; i < *count; i++)
                if (get_u32(r, &(*list)[i].owner_uid) < 0 || get_u32(r, &(*list)[i].owner_gid) < 0) {
                        (*list)[i].owner_uid = (*list)[i].owner_gid = UINT32_MAX;
                        break;
                }
        return 0;
}

COMET_PUBLIC int comet_list(comet *c, comet_channel_info **ret, size_t *ret_count) {
        if (!c || !ret || !ret_count)
                return -EINVAL;
        comet_channel_info *list = NULL;
        size_t count = 0, capacity = 0;
        int more = 1, r = 0;
        while (r == 0 && more) {
                uint32_t id;
                size_t mark, len = 0;
                uint8_t *reply = NULL;
                if (count == 0)
                        r = request_begin(c, OP_LIST, &id, &mark);
                else if ((r = request_begin(c, OP_LIST_FROM, &id, &mark)) == 0 &&
                         (r = put_u8(&c->out, list[count - 1].scope)) == 0)
                        r = put_str(&c->out, list[count - 1].name);
                if (r < 0 || (r = query(c, id, mark, &reply, &len)) < 0)
                        break;
                struct reader body = {.p = reply, .left = len};
                r = parse_channels(&body, &list, &count, &capacity, &more);
                free(reply);
        }
        if (r < 0) {
                free(list);
                return r;
        }
        *ret = list;
        *ret_count = count;
        return 0;
}

COMET_PUBLIC int comet_sessions(comet *c, comet_session_info **ret, size_t *ret_count) {
        if (!c || !ret || !ret_count)
                return -EINVAL;
        comet_session_info *list = NULL;
        size_t count = 0, capacity = 0;
        int more = 1, r = 0;
        while (r == 0 && more) {
                uint32_t id, n;
                size_t mark, len = 0;
                uint8_t *reply = NULL;
                if (count == 0)
                        r = request_begin(c, OP_SESSIONS, &id, &mark);
                else if ((r = request_begin(c, OP_SESSIONS_FROM, &id, &mark)) == 0)
                        r = put_u64(&c->out, list[count - 1].id);
                if (r < 0 || (r = query(c, id, mark, &reply, &len)) < 0)
                        break;
                struct reader body = {.p = reply, .left = len};
                if (get_u32(&body, &n) < 0)
                        r = -EBADMSG;
                for (uint32_t i = 0; r == 0 && i < n; i++) {
                        if ((r = grow((void **)&list, &capacity, count, sizeof *list)) < 0)
                                break;
                        comet_session_info *e = &list[count];
                        if (get_u64(&body, &e->id) < 0 || get_u32(&body, &e->uid) < 0 || get_u32(&body, &e->connections) < 0 ||
                            get_u32(&body, &e->private_channels) < 0 || get_u64(&body, &e->idle_ms) < 0)
                                r = -EBADMSG;
                        else
                                count++;
                }
                uint8_t m = 0;
                more = r == 0 && get_u8(&body, &m) == 0 && m == 1 && n > 0;
                free(reply);
        }
        if (r < 0) {
                free(list);
                return r;
        }
        *ret = list;
        *ret_count = count;
        return 0;
}

COMET_PUBLIC void comet_free(void *p) { free(p); }
