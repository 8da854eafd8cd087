/* libcomet: connecting, resuming, event-loop accessors. */
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

int open_socket(const char *path) {
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

int handshake(comet *c) {
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
        /* then instance u64, then features u64 (daemons from 0.6) */
        c->features = len >= 52 ? be64(reply + 44) : 0;
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
        if (strlen(path) < sizeof c->path)
                memcpy(c->path, path, strlen(path) + 1);
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
        buf_free(&c->journal);
        for (size_t i = 0; i < c->pending_count; i++) {
                struct pending *p = &c->pending[(c->pending_head + i) % c->pending_capacity];
                if (p->id != 0)
                        free(p->name);
        }
        for (size_t i = 0; i < c->sub_count; i++) {
                free(c->subs[i].name);
                ring_release(&c->subs[i].ring);
        }
        free(c->ring_copy);
        free(c->produced);
        free(c->pending);
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

COMET_PUBLIC int comet_resume_async(comet *c, const comet_session *session, comet_done_handler done, void *userdata) {
        if (!c || !session)
                return -EINVAL;
        uint32_t id;
        size_t mark;
        int r = pending_reserve(c);
        if (r < 0 || (r = request_begin(c, OP_RESUME, &id, &mark)) < 0 || (r = put_u64(&c->out, session->id)) < 0 ||
            (r = buf_append(&c->out, session->token, 16)) < 0)
                return r;
        send_async(c, id, mark, REQ_RESUME, done, userdata)->session = *session;
        return 0;
}
