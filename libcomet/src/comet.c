/* libcomet: connection, requests, event dispatch. */
#include "comet.h"

#include "buffer.h"

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

enum {
        OP_HELLO = 0x01, OP_CREATE = 0x02, OP_PUSH = 0x03, OP_CLOSE = 0x05, OP_SUBSCRIBE = 0x06,
        OP_UNSUBSCRIBE = 0x07, OP_RESUME = 0x0A, OP_CREATE_PRIVATE = 0x0B, OP_ACK = 0x0C, OP_ANSWER = 0x0E,
        OP_WAIT_TIMEOUT = 0x0F, OP_SUBSCRIBE_EXTERNAL = 0x10,
        OP_OK = 0x80, OP_ERROR = 0x81,
        OP_MESSAGE = 0x90, OP_FULL = 0x91, OP_CLOSED = 0x92, OP_STARTED = 0x93, OP_OFFER = 0x94, OP_ENDED = 0x95,
        OP_PULL = 0x96, OP_RESET = 0x97,
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

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int grow(void **array, size_t *capacity, size_t count, size_t element) {
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

static uint32_t new_id(comet *c) {
        uint32_t id = c->next_id++;
        if (c->next_id == 0)
                c->next_id = 1;
        return id;
}

/* Writes what it can without blocking. */
static int write_some(comet *c) {
        while (buf_len(&c->out) > 0) {
                ssize_t n = send(c->fd, buf_head(&c->out), buf_len(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        return -errno;
                }
                buf_consume(&c->out, (size_t)n);
        }
        return 0;
}

static int wait_fd(comet *c, short events, uint64_t timeout_usec) {
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

static int read_some(comet *c);

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
static int read_some(comet *c) {
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
static int next_frame(comet *c, struct buf *b, struct reader *body) {
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

static void set_error_message(comet *c, struct reader *r) {
        if (get_str(r, c->last_error, sizeof c->last_error) < 0)
                c->last_error[0] = 0;
}

/* ---- Dispatch ------------------------------------------------------------------------------- */

static struct subscription *find_sub(comet *c, uint32_t id) {
        for (size_t i = 0; i < c->sub_count; i++)
                if (c->subs[i].id == id)
                        return &c->subs[i];
        return NULL;
}

static void remove_sub(comet *c, uint32_t id) {
        for (size_t i = 0; i < c->sub_count; i++)
                if (c->subs[i].id == id) {
                        c->subs[i] = c->subs[--c->sub_count];
                        return;
                }
}

static struct puller *find_puller(comet *c, uint64_t channel) {
        for (size_t i = 0; i < c->puller_count; i++)
                if (c->pullers[i].channel == channel)
                        return &c->pullers[i];
        return NULL;
}

static void remove_puller(comet *c, uint64_t channel) {
        for (size_t i = 0; i < c->puller_count; i++)
                if (c->pullers[i].channel == channel) {
                        c->pullers[i] = c->pullers[--c->puller_count];
                        return;
                }
}

/* The answer to an async request: the oldest one outstanding. */
static void finish_async(comet *c, uint32_t id, int error) {
        if (c->async_count == 0 || c->async[0].id != id)
                return;
        uint64_t channel = c->async[0].channel;
        memmove(c->async, c->async + 1, (c->async_count - 1) * sizeof *c->async);
        c->async_count--;
        if (error < 0 && c->on_error)
                c->on_error(c, channel, error, c->error_userdata);
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
                finish_async(c, id, 0);
                return 0;
        case OP_ERROR: {
                uint16_t code;
                if (get_u32(r, &id) < 0 || get_u16(r, &code) < 0)
                        return -EBADMSG;
                set_error_message(c, r);
                if (id == 0)
                        return -(COMET_E_BASE + code);
                finish_async(c, id, -(COMET_E_BASE + code));
                return 0;
        }
        case OP_MESSAGE: {
                if (get_u32(r, &sub) < 0 || get_u64(r, &a) < 0)
                        return -EBADMSG;
                struct subscription *s = find_sub(c, sub);
                if (!s)
                        return 0;
                uint32_t sid = s->id;
                int is_private = s->is_private;
                int rc = s->on_message(c, sid, a, r->p, r->left, s->userdata);
                /* The handler may have unsubscribed: look it up again. */
                if (rc >= 0 && is_private && (s = find_sub(c, sid)) && a > s->acked)
                        s->acked = a;
                return 0;
        }
        case OP_FULL:
        case OP_CLOSED:
        case OP_RESET: {
                if (get_u32(r, &sub) < 0 || get_u64(r, &a) < 0)
                        return -EBADMSG;
                struct subscription *s = find_sub(c, sub);
                if (!s)
                        return 0;
                struct subscription copy = *s;
                remove_sub(c, sub);
                if (copy.on_end)
                        copy.on_end(c, sub, op == OP_FULL ? COMET_END_FULL : op == OP_CLOSED ? COMET_END_CLOSED : COMET_END_RESET, a,
                                    copy.userdata);
                return 0;
        }
        case OP_STARTED:
                return 0;
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

static int queue_acks(comet *c);

static int fail(comet *c, int error) {
        if (!c->failed)
                c->failed = error;
        /* Every subscription learns that the connection ended. */
        while (c->sub_count > 0) {
                struct subscription s = c->subs[c->sub_count - 1];
                c->sub_count--;
                if (s.on_end)
                        s.on_end(c, s.id, COMET_END_CONNECTION, 0, s.userdata);
        }
        return c->failed;
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
                if ((r = dispatch(c, &body)) < 0)
                        return r;
                if (c->failed)
                        return c->failed;
        }
}

/* Whether `b` holds a whole frame. */
static int has_frame(const struct buf *b) {
        if (buf_len(b) < 4)
                return 0;
        const uint8_t *p = buf_head(b);
        uint32_t length = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        return buf_len(b) >= 4 + (size_t)length;
}

COMET_PUBLIC int comet_process(comet *c) {
        if (!c)
                return -EINVAL;
        if (c->failed)
                return c->failed;
        int did = 0, r;
        size_t before = buf_len(&c->out);
        if ((r = write_some(c)) < 0)
                return fail(c, r);
        if (buf_len(&c->out) != before)
                did = 1;
        if ((r = dispatch_all(c, &did)) < 0)
                return fail(c, r);
        int n = read_some(c);
        if (n > 0)
                did = 1;
        if ((r = dispatch_all(c, &did)) < 0)
                return fail(c, r);
        if (n < 0)
                return fail(c, n);
        if ((r = queue_acks(c)) < 0 || (r = write_some(c)) < 0)
                return fail(c, r);
        return did;
}

/* ---- Blocking requests ---------------------------------------------------------------------- */

/* Waits for the answer to `id`. On OK, copies the reply fields into `reply` (if not NULL).
 * Frames that arrive meanwhile are set aside for comet_process(). */
static int await_answer(comet *c, uint32_t id, uint8_t *reply, size_t reply_size, size_t *reply_len) {
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

static uint64_t be64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Starts a request frame: opcode and a fresh id. */
static int request_begin(comet *c, uint8_t op, uint32_t *id, size_t *mark) {
        if (c->failed)
                return c->failed;
        int r = frame_begin(&c->out, mark);
        if (r < 0)
                return r;
        *id = new_id(c);
        if ((r = put_u8(&c->out, op)) < 0 || (r = put_u32(&c->out, *id)) < 0)
                return r;
        return 0;
}

/* ---- Connections ---------------------------------------------------------------------------- */

static const char *default_path(char *scratch, size_t size) {
        const char *env = getenv("COMET_SOCKET");
        if (env && *env)
                return env;
        if (geteuid() == 0)
                return "/run/comet/comet.sock";
        const char *runtime = getenv("XDG_RUNTIME_DIR");
        if (!runtime || !*runtime)
                return NULL;
        snprintf(scratch, size, "%s/comet/comet.sock", runtime);
        return scratch;
}

static int open_socket(const char *path) {
        struct sockaddr_un address = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof address.sun_path)
                return -ENAMETOOLONG;
        strcpy(address.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        return fd;
}

static int handshake(comet *c) {
        uint32_t id;
        size_t mark;
        int r = request_begin(c, OP_HELLO, &id, &mark);
        if (r < 0 || (r = put_u8(&c->out, 1)) < 0 || (r = put_u16(&c->out, COMET_PROTOCOL_VERSION)) < 0)
                return r;
        frame_end(&c->out, mark);
        uint8_t reply[64];
        size_t len = 0;
        if ((r = await_answer(c, id, reply, sizeof reply, &len)) < 0)
                return r;
        /* version u16, max_frame u32, max_channel_size u32, max_name u16, session u64, token 16 bytes */
        if (len < 36)
                return -EBADMSG;
        c->max_frame = be32(reply + 2);
        if (c->max_frame < 4096)
                c->max_frame = 4096;
        c->session.id = be64(reply + 12);
        memcpy(c->session.token, reply + 20, 16);
        return 0;
}

COMET_PUBLIC int comet_connect_resume(comet **ret, const char *path, const comet_session *session) {
        if (!ret)
                return -EINVAL;
        char scratch[256];
        if (!path && !(path = default_path(scratch, sizeof scratch)))
                return -ENOENT;
        int fd = open_socket(path);
        if (fd < 0)
                return fd;
        comet *c = calloc(1, sizeof *c);
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->fd = fd;
        c->next_id = 1;
        c->max_frame = DEFAULT_MAX_FRAME;
        int r = handshake(c);
        if (r == 0 && session) {
                uint32_t id;
                size_t mark;
                if ((r = request_begin(c, OP_RESUME, &id, &mark)) == 0 && (r = put_u64(&c->out, session->id)) == 0 &&
                    (r = buf_append(&c->out, session->token, 16)) == 0) {
                        frame_end(&c->out, mark);
                        if ((r = await_answer(c, id, NULL, 0, NULL)) == 0)
                                c->session = *session;
                }
        }
        if (r < 0) {
                comet_unref(c);
                return r;
        }
        *ret = c;
        return 0;
}

COMET_PUBLIC int comet_connect(comet **ret, const char *path) { return comet_connect_resume(ret, path, NULL); }

COMET_PUBLIC comet *comet_unref(comet *c) {
        if (!c)
                return NULL;
        if (c->fd >= 0) {
                /* Best effort: acknowledgements and pushes already queued still go out. */
                if (!c->failed) {
                        queue_acks(c);
                        write_some(c);
                }
                close(c->fd);
        }
        buf_free(&c->out);
        buf_free(&c->in);
        buf_free(&c->backlog);
        free(c->async);
        free(c->subs);
        free(c->pullers);
        free(c);
        return NULL;
}

COMET_PUBLIC int comet_get_session(comet *c, comet_session *ret) {
        if (!c || !ret)
                return -EINVAL;
        *ret = c->session;
        return 0;
}

COMET_PUBLIC const char *comet_last_error_message(comet *c) { return c ? c->last_error : ""; }

COMET_PUBLIC int comet_get_fd(comet *c) { return c ? c->fd : -EINVAL; }

COMET_PUBLIC int comet_get_events(comet *c) {
        if (!c)
                return -EINVAL;
        return POLLIN | (buf_len(&c->out) > 0 ? POLLOUT : 0);
}

COMET_PUBLIC int comet_get_timeout(comet *c, uint64_t *ret_usec) {
        if (!c || !ret_usec)
                return -EINVAL;
        /* Frames set aside by a blocking call are ready now. */
        *ret_usec = has_frame(&c->backlog) || has_frame(&c->in) ? now_usec() : UINT64_MAX;
        return 0;
}

COMET_PUBLIC int comet_wait(comet *c, uint64_t timeout_usec) {
        if (!c)
                return -EINVAL;
        uint64_t deadline;
        comet_get_timeout(c, &deadline);
        if (deadline != UINT64_MAX)
                return 1;
        return wait_fd(c, (short)comet_get_events(c), timeout_usec);
}

COMET_PUBLIC int comet_set_offer_handler(comet *c, comet_offer_handler handler, void *userdata) {
        if (!c)
                return -EINVAL;
        c->on_offer = handler;
        c->offer_userdata = userdata;
        return 0;
}

COMET_PUBLIC int comet_set_error_handler(comet *c, comet_error_handler handler, void *userdata) {
        if (!c)
                return -EINVAL;
        c->on_error = handler;
        c->error_userdata = userdata;
        return 0;
}

/* ---- Producers ------------------------------------------------------------------------------ */

static int check_name(const char *name) {
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

/* ---- Consumers ------------------------------------------------------------------------------ */

/* Waits for a SUBSCRIBE-like answer to `id` and registers the subscription. */
static int finish_subscribe(comet *c, uint32_t id, int is_private, comet_message_handler on_message, comet_end_handler on_end,
                            void *userdata, uint32_t *ret_subscription);

static int subscribe(comet *c, const char *name, uint8_t flags, comet_position position, uint64_t argument,
                     uint64_t epoch, comet_message_handler on_message, comet_end_handler on_end, void *userdata,
                     uint32_t *ret_subscription) {
        if (!c || !on_message || (unsigned)position > COMET_FROM_LAST)
                return -EINVAL;
        int r = check_name(name);
        if (r < 0 || (r = grow((void **)&c->subs, &c->sub_capacity, c->sub_count, sizeof *c->subs)) < 0)
                return r;
        uint32_t id;
        size_t mark;
        if ((r = request_begin(c, OP_SUBSCRIBE, &id, &mark)) < 0)
                return r;
        if ((r = put_u8(&c->out, flags)) < 0 || (r = put_u8(&c->out, (uint8_t)position)) < 0 ||
            (r = put_u64(&c->out, argument)) < 0 || (r = put_u64(&c->out, epoch)) < 0 || (r = put_str(&c->out, name)) < 0)
                return r;
        frame_end(&c->out, mark);
        return finish_subscribe(c, id, (flags & 0x2) != 0, on_message, on_end, userdata, ret_subscription);
}

COMET_PUBLIC int comet_external_channel(comet *c, const char *address, const char *name, uint32_t history, int newest,
                                        comet_message_handler on_message, comet_end_handler on_end, void *userdata,
                                        uint32_t *ret_subscription) {
        if (!c || !on_message || !address || !*address)
                return -EINVAL;
        int r = check_name(name);
        if (r < 0 || (r = grow((void **)&c->subs, &c->sub_capacity, c->sub_count, sizeof *c->subs)) < 0)
                return r;
        uint32_t id;
        size_t mark;
        if ((r = request_begin(c, OP_SUBSCRIBE_EXTERNAL, &id, &mark)) < 0)
                return r;
        if ((r = put_u8(&c->out, newest ? 1 : 0)) < 0 || (r = put_u32(&c->out, history)) < 0 ||
            (r = put_str(&c->out, address)) < 0 || (r = put_str(&c->out, name)) < 0)
                return r;
        frame_end(&c->out, mark);
        return finish_subscribe(c, id, 0, on_message, on_end, userdata, ret_subscription);
}

static int finish_subscribe(comet *c, uint32_t id, int is_private, comet_message_handler on_message, comet_end_handler on_end,
                            void *userdata, uint32_t *ret_subscription) {
        int r;
        uint8_t reply[21];
        size_t len = 0;
        if ((r = await_answer(c, id, reply, sizeof reply, &len)) < 0)
                return r;
        if (len < 21)
                return -EBADMSG;
        uint32_t sub = be32(reply);
        uint64_t next = be64(reply + 13);
        c->subs[c->sub_count++] = (struct subscription){
                .id = sub, .is_private = is_private, .acked = next ? next - 1 : 0, .ack_sent = next ? next - 1 : 0,
                .on_message = on_message, .on_end = on_end, .userdata = userdata};
        if (ret_subscription)
                *ret_subscription = sub;
        return 0;
}

COMET_PUBLIC int comet_subscribe(comet *c, const char *name, comet_position position, uint64_t argument, uint64_t epoch,
                                 unsigned flags, comet_message_handler on_message, comet_end_handler on_end, void *userdata,
                                 uint32_t *ret_subscription) {
        if (flags & ~COMET_SUBSCRIBE_WAIT)
                return -EINVAL;
        return subscribe(c, name, (uint8_t)flags, position, argument, epoch, on_message, on_end, userdata, ret_subscription);
}

COMET_PUBLIC int comet_subscribe_private(comet *c, const char *name, comet_message_handler on_message,
                                         comet_end_handler on_end, void *userdata, uint32_t *ret_subscription) {
        return subscribe(c, name, 0x2, COMET_FROM_NEXT, 0, 0, on_message, on_end, userdata, ret_subscription);
}

COMET_PUBLIC int comet_unsubscribe(comet *c, uint32_t subscription) {
        if (!c)
                return -EINVAL;
        if (!find_sub(c, subscription))
                return -COMET_E_NO_SUCH_SUBSCRIPTION;
        int r = queue_acks(c);
        uint32_t id;
        size_t mark;
        if (r < 0 || (r = request_begin(c, OP_UNSUBSCRIBE, &id, &mark)) < 0 || (r = put_u32(&c->out, subscription)) < 0)
                return r;
        frame_end(&c->out, mark);
        remove_sub(c, subscription);
        return await_answer(c, id, NULL, 0, NULL);
}

/* One cumulative ACK per private subscription whose handler took new messages. */
static int queue_acks(comet *c) {
        for (size_t i = 0; i < c->sub_count; i++) {
                struct subscription *s = &c->subs[i];
                if (!s->is_private || s->acked <= s->ack_sent)
                        continue;
                int r = grow((void **)&c->async, &c->async_capacity, c->async_count, sizeof *c->async);
                uint32_t id;
                size_t mark;
                if (r < 0 || (r = request_begin(c, OP_ACK, &id, &mark)) < 0 || (r = put_u32(&c->out, s->id)) < 0 ||
                    (r = put_u64(&c->out, s->acked)) < 0)
                        return r;
                frame_end(&c->out, mark);
                c->async[c->async_count++] = (struct async_request){.id = id, .channel = 0};
                s->ack_sent = s->acked;
        }
        return 0;
}
