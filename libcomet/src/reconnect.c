/* libcomet: reconnecting by itself when the connection to cometd is lost (docs/RESTARTS.md). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RECONNECT_FIRST_DELAY_USEC 20000ull
#define RECONNECT_MAX_DELAY_USEC 2000000ull
#define RECONNECT_GIVE_UP_USEC 60000000ull

COMET_PUBLIC int comet_set_reconnect(comet *c, int enable) {
        if (!c)
                return -EINVAL;
        c->reconnect = enable != 0;
        return 0;
}

/* Whether `error` means the connection is gone (not a refusal or a protocol violation). */
static int is_lost(int error) {
        return error == -ECONNRESET || error == -EPIPE || error == -ENOTCONN || error == -ECONNREFUSED ||
               error == -ECONNABORTED || error == -(COMET_E_BASE + 18) /* SHUTTING_DOWN */;
}

static void sleep_usec(uint64_t usec) {
        struct timespec t = {.tv_sec = (time_t)(usec / 1000000), .tv_nsec = (long)(usec % 1000000) * 1000};
        while (nanosleep(&t, &t) < 0 && errno == EINTR) {
        }
}

/* A blocking request on the new connection: its answer's fields go to `reply`. */
static int ask(comet *c, uint8_t op, const uint8_t *fields, size_t size, uint8_t *reply, size_t reply_size, size_t *len) {
        uint32_t id;
        size_t mark;
        int r = request_begin(c, op, &id, &mark);
        if (r < 0 || (r = buf_append(&c->out, fields, size)) < 0)
                return r;
        frame_end(&c->out, mark);
        return await_answer(c, id, reply, reply_size, len);
}

static void put64(uint8_t *p, uint64_t v) {
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
        for (int i = 3; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

/* On a fresh connection: HELLO, RESUME of the session, ADOPT of every channel this connection
 * produces, every subscription again. < 0 when the new connection failed too. */
static int restore(comet *c) {
        comet_session previous = c->session;
        int r = handshake(c);
        if (r < 0)
                return r;
        if (previous.id) {
                uint8_t fields[24];
                put64(fields, previous.id);
                memcpy(fields + 8, previous.token, 16);
                r = ask(c, OP_RESUME, fields, sizeof fields, NULL, 0, NULL);
                if (r == 0)
                        c->session = previous;
                else if (c->failed)
                        return c->failed;
        }
        for (size_t i = 0; i < c->produced_count;) {
                struct produced p = c->produced[i];
                uint8_t fields[24];
                put64(fields, p.channel);
                memcpy(fields + 8, p.token, 16);
                r = ask(c, OP_ADOPT, fields, sizeof fields, NULL, 0, NULL);
                if (c->failed)
                        return c->failed;
                if (r < 0) {
                        /* Not ours any more: the producer hears it as a refusal on that channel. */
                        produced_remove(c, p.channel);
                        remove_puller(c, p.channel);
                        if (c->on_error)
                                c->on_error(c, p.channel, r, c->error_userdata);
                        continue;
                }
                i++;
        }
        /* What had no answer goes again, in order, before anything new: the daemon skips what it has. */
        if (c->features & 1) {
                if ((r = journal_resend(c)) < 0)
                        return r;
        } else {
                pending_fail_all(c, -ECONNRESET);
        }
        for (size_t i = 0; i < c->sub_count;) {
                struct subscription *s = &c->subs[i];
                if (!s->name) {
                        /* External channels are not made again: their end handler hears of the loss. */
                        struct subscription copy = *s;
                        c->subs[i] = c->subs[--c->sub_count];
                        if (copy.on_end)
                                copy.on_end(c, copy.id, COMET_END_CONNECTION, 0, copy.userdata);
                        continue;
                }
                /* SUBSCRIBE: flags, position, argument, epoch, name, [owner] */
                size_t name_len = strlen(s->name);
                uint8_t fields[2 + 8 + 8 + 2 + 255 + 4];
                size_t n = 0;
                int waiting = s->last == 0 && s->epoch == 0;
                uint8_t flags = (uint8_t)(s->flags & (waiting ? 0x1F : 0x1E));
                /* Mapped again if this daemon maps rings (the old mapping is replaced when it says so),
                 * and given back after a detach if it does that. */
                if (!(c->features & FEATURE_MAPPED_RINGS) || s->is_private)
                        flags &= (uint8_t)~(SUBSCRIBE_MAPPED | SUBSCRIBE_RETURN);
                if ((flags & SUBSCRIBE_MAPPED) && (c->features & FEATURE_RING_RETURN))
                        flags |= SUBSCRIBE_RETURN;
                else
                        flags &= (uint8_t)~SUBSCRIBE_RETURN;
                fields[n++] = flags;
                if (s->is_private || waiting) {
                        fields[n++] = COMET_FROM_NEXT;
                        put64(fields + n, 0);
                        put64(fields + n + 8, 0);
                } else {
                        fields[n++] = COMET_FROM_SEQUENCE;
                        put64(fields + n, s->last + 1);
                        put64(fields + n + 8, s->epoch);
                }
                n += 16;
                fields[n++] = (uint8_t)(name_len >> 8);
                fields[n++] = (uint8_t)name_len;
                memcpy(fields + n, s->name, name_len);
                n += name_len;
                if (flags & 0x4) {
                        put32(fields + n, s->pinned_owner);
                        n += 4;
                }
                uint8_t reply[21];
                size_t len = 0;
                r = ask(c, OP_SUBSCRIBE, fields, n, reply, sizeof reply, &len);
                if (c->failed)
                        return c->failed;
                s = &c->subs[i];
                if (r < 0 || len < 21) {
                        struct subscription copy = *s;
                        c->subs[i] = c->subs[--c->sub_count];
                        free(copy.name);
                        if (copy.on_end) {
                                if (r == -COMET_E_EPOCH_MISMATCH)
                                        copy.on_end(c, copy.id, COMET_END_RESET, 0, copy.userdata);
                                else
                                        copy.on_end(c, copy.id, COMET_END_FAILED, (uint64_t)(r < 0 ? -r : EBADMSG), copy.userdata);
                        }
                        continue;
                }
                s->server_id = be32(reply);
                if (!reply[4])
                        s->epoch = be64(reply + 5);
                if (s->is_private) {
                        /* Acknowledgements go on from where the daemon has them; what comes again
                         * is dropped (and acknowledged) as it arrives. */
                        uint64_t next = be64(reply + 13);
                        s->acked = s->ack_sent = next ? next - 1 : 0;
                }
                i++;
        }
        return 0;
}

int reconnect(comet *c, int error) {
        if (!c->reconnect || !is_lost(error) || c->path[0] == 0)
                return error;
        c->reconnecting = 1;
        /* What was in flight may or may not have been applied: it fails with the error, except
         * numbered pushes, which are sent again (numbered.c). */
        batch_close(c);
        pending_keep_numbered(c, error);
        buf_clear(&c->out);
        buf_clear(&c->in);
        buf_clear(&c->backlog);
        c->batch_open = 0;
        c->next_write_at = 0;
        uint64_t deadline = now_usec() + RECONNECT_GIVE_UP_USEC;
        uint64_t delay = RECONNECT_FIRST_DELAY_USEC;
        int old = c->fd;
        for (;;) {
                int fd = open_socket(c->path);
                if (fd >= 0) {
                        /* Same descriptor number as before, for callers that poll it. */
                        if (old >= 0 && fd != old) {
                                if (dup3(fd, old, O_CLOEXEC) >= 0) {
                                        close(fd);
                                        fd = old;
                                }
                        }
                        c->fd = fd;
                        c->failed = 0;
                        if (restore(c) == 0 && !c->failed)
                                break;
                        pending_keep_numbered(c, -ECONNRESET);
                        buf_clear(&c->out);
                        buf_clear(&c->in);
                        buf_clear(&c->backlog);
                        old = c->fd;
                }
                if (now_usec() >= deadline) {
                        c->reconnecting = 0;
                        c->failed = 0;
                        return error;
                }
                sleep_usec(delay);
                delay = delay * 2 > RECONNECT_MAX_DELAY_USEC ? RECONNECT_MAX_DELAY_USEC : delay * 2;
        }
        c->reconnecting = 0;
        return 0;
}

COMET_PUBLIC int comet_last_sequence(comet *c, uint64_t channel, uint64_t *ret_last) {
        if (!c)
                return -EINVAL;
        struct produced *p = produced_find(c, channel);
        if (!p)
                return -COMET_E_NO_SUCH_CHANNEL;
        uint8_t fields[24];
        put64(fields, channel);
        memcpy(fields + 8, p->token, 16);
        uint8_t reply[24];
        size_t len = 0;
        int r = ask(c, OP_ADOPT, fields, sizeof fields, reply, sizeof reply, &len);
        if (r < 0)
                return r;
        if (len < 24)
                return -EBADMSG;
        if (ret_last)
                *ret_last = be64(reply + 16);
        return 0;
}
