/* libcomet: the socket, framing and blocking waits. */
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

uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int grow(void **array, size_t *capacity, size_t count, size_t element) {
        if (count < *capacity)
                return 0;
        size_t want = *capacity ? *capacity * 2 : 8;
        void *p = realloc(*array, want * element);
        if (!p)
                return -ENOMEM;
        *array = p;
        *capacity = want;
        return 0;
}

/* ---- Output --------------------------------------------------------------------------------- */

uint32_t new_id(comet *c) {
        uint32_t id = c->next_id++;
        if (c->next_id == 0)
                c->next_id = 1;
        return id;
}

/* Writes what it can of the first `limit` queued bytes without blocking. */
int write_before(comet *c, size_t limit) {
        while (limit > 0 && buf_len(&c->out) > 0) {
                ssize_t n = send(c->fd, buf_head(&c->out), limit, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        return -errno;
                }
                buf_consume(&c->out, (size_t)n);
                limit -= (size_t)n;
                /* The batch being filled is at an offset from the start of the queue. */
                if (c->batch_open)
                        c->batch_mark -= (size_t)n;
        }
        return 0;
}

/* Writes what it can without blocking (the batch being filled is ended first). */
int write_some(comet *c) {
        batch_close(c);
        c->next_write_at = 0;
        return write_before(c, buf_len(&c->out));
}

int wait_fd(comet *c, short events, uint64_t timeout_usec) {
        struct pollfd p = {.fd = c->fd, .events = events};
        int ms = timeout_usec == UINT64_MAX ? -1 : (int)((timeout_usec + 999) / 1000);
        for (;;) {
                int r = poll(&p, 1, ms);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                return r;
        }
}


COMET_PUBLIC int comet_flush(comet *c) {
        if (!c)
                return -EINVAL;
        while (buf_len(&c->out) > 0) {
                int r = write_some(c);
                if (r < 0)
                        return r;
                if (buf_len(&c->out) == 0)
                        break;
                /* Keep reading while waiting to write: the daemon stops reading a connection whose
                 * answers pile up unread, so waiting only for POLLOUT could wait forever. What is
                 * read stays queued for comet_process(). */
                struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLOUT};
                if (poll(&p, 1, -1) < 0 && errno != EINTR)
                        return -errno;
                if (p.revents & (POLLIN | POLLHUP)) {
                        int n = read_some(c);
                        if (n < 0)
                                return n;
                }
        }
        return 0;
}

/* ---- Input ---------------------------------------------------------------------------------- */

/* Reads what is available without blocking. Returns bytes read, 0 if none, -ECONNRESET at end. */
int read_some(comet *c) {
        int total = 0;
        for (;;) {
                int r = buf_reserve(&c->in, 65536);
                if (r < 0)
                        return r;
                ssize_t n = recv(c->fd, c->in.data + c->in.end, c->in.capacity - c->in.end, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return total;
                        return -errno;
                }
                if (n == 0)
                        return total > 0 ? total : -ECONNRESET;
                c->in.end += (size_t)n;
                total += (int)n;
                if (total >= (1 << 20))
                        return total;
        }
}

/* The next whole frame in `b` as a reader over its body; 0 if incomplete, < 0 if invalid. */
int next_frame(comet *c, struct buf *b, struct reader *body) {
        if (buf_len(b) < 4)
                return 0;
        const uint8_t *p = buf_head(b);
        uint32_t length = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (length == 0 || length > c->max_frame)
                return -EBADMSG;
        if (buf_len(b) < 4 + (size_t)length)
                return 0;
        body->p = p + 4;
        body->left = length;
        buf_consume(b, 4 + (size_t)length);
        return 1;
}

void set_error_message(comet *c, struct reader *r) {
        if (get_str(r, c->last_error, sizeof c->last_error) < 0)
                c->last_error[0] = 0;
}

int has_frame(const struct buf *b) {
        if (buf_len(b) < 4)
                return 0;
        const uint8_t *p = buf_head(b);
        uint32_t length = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        return buf_len(b) >= 4 + (size_t)length;
}

/* ---- Blocking requests ---------------------------------------------------------------------- */

/* Waits for the answer to `id`. On OK, copies the reply fields into `reply` (if not NULL).
 * Frames that arrive meanwhile are set aside for comet_process(). */
int await_answer(comet *c, uint32_t id, uint8_t *reply, size_t reply_size, size_t *reply_len) {
        int r = comet_flush(c);
        if (r < 0)
                return fail(c, r);
        for (;;) {
                struct reader body;
                while ((r = next_frame(c, &c->in, &body)) > 0) {
                        struct reader peek = body;
                        uint8_t op;
                        uint32_t rid;
                        if (get_u8(&peek, &op) < 0)
                                return fail(c, -EBADMSG);
                        if ((op == OP_OK || op == OP_ERROR) && get_u32(&peek, &rid) == 0 &&
                            (rid == id || (op == OP_ERROR && rid == 0))) {
                                if (op == OP_ERROR) {
                                        uint16_t code;
                                        if (get_u16(&peek, &code) < 0)
                                                return fail(c, -EBADMSG);
                                        set_error_message(c, &peek);
                                        return rid == 0 ? fail(c, -(COMET_E_BASE + code)) : -(COMET_E_BASE + code);
                                }
                                if (reply) {
                                        size_t n = peek.left < reply_size ? peek.left : reply_size;
                                        memcpy(reply, peek.p, n);
                                        if (reply_len)
                                                *reply_len = n;
                                }
                                return 0;
                        }
                        /* Not ours: keep the whole frame, prefix included, for later. */
                        size_t mark;
                        if ((r = frame_begin(&c->backlog, &mark)) < 0 || (r = buf_append(&c->backlog, body.p, body.left)) < 0)
                                return fail(c, r);
                        frame_end(&c->backlog, mark);
                }
                if (r < 0)
                        return fail(c, r);
                if ((r = wait_fd(c, POLLIN, UINT64_MAX)) < 0)
                        return fail(c, r);
                int n = read_some(c);
                if (n < 0)
                        return fail(c, n);
        }
}

uint64_t be64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Starts a request frame: opcode and a fresh id. */
int request_begin(comet *c, uint8_t op, uint32_t *id, size_t *mark) {
        if (c->failed)
                return c->failed;
        batch_close(c);
        int r = frame_begin(&c->out, mark);
        if (r < 0)
                return r;
        *id = new_id(c);
        if ((r = put_u8(&c->out, op)) < 0 || (r = put_u32(&c->out, *id)) < 0)
                return r;
        return 0;
}
