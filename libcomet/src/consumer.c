/* libcomet: consumers. */
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
#include <pwd.h>

/* ---- Consumers ------------------------------------------------------------------------------ */

/* Waits for a SUBSCRIBE-like answer to `id` and registers the subscription; `name` and `flags`
 * (NULL: an external channel) make it again after a reconnect. */
static int finish_subscribe(comet *c, uint32_t id, int is_private, const char *name, uint8_t flags, uint32_t owner_uid,
                            comet_message_handler on_message, comet_end_handler on_end, void *userdata,
                            uint32_t *ret_subscription);

/* Checks the name, makes room for one more subscription and starts its request frame. */
static int begin_subscription(comet *c, const char *name, uint8_t op, uint32_t *id, size_t *mark) {
        int r = check_name(name);
        if (r < 0 || (r = grow((void **)&c->subs, &c->sub_capacity, c->sub_count, sizeof *c->subs)) < 0)
                return r;
        return request_begin(c, op, id, mark);
}

/* The owner a channel name implies (docs/POLICY.md): `user.NAME.REST` (REST not empty) is user
 * NAME's, NAME a uid in decimal or a user of the system's database. Returns 1 and sets `*uid`, or
 * 0 when the name implies none. */
static int implied_owner(const char *name, uint32_t *uid) {
        static const char prefix[] = "user.";
        if (strncmp(name, prefix, sizeof prefix - 1) != 0)
                return 0;
        const char *user = name + sizeof prefix - 1;
        const char *dot = strchr(user, '.');
        if (!dot || dot == user || dot[1] == '\0' || (size_t)(dot - user) >= 256)
                return 0;
        char text[256];
        memcpy(text, user, (size_t)(dot - user));
        text[dot - user] = '\0';
        char *end = NULL;
        errno = 0;
        unsigned long number = strtoul(text, &end, 10);
        if (text[0] >= '0' && text[0] <= '9' && end && *end == '\0' && errno == 0 && number <= UINT32_MAX) {
                *uid = (uint32_t)number;
                return 1;
        }
        struct passwd entry, *found = NULL;
        char buffer[4096];
        if (getpwnam_r(text, &entry, buffer, sizeof buffer, &found) != 0 || !found)
                return 0;
        *uid = (uint32_t)found->pw_uid;
        return 1;
}

/* SUBSCRIBE's wire flags and owner for comet_subscribe()'s `flags`: the implied owner is pinned
 * unless COMET_SUBSCRIBE_ANY_OWNER; the ring is mapped when the daemon offers it, unless
 * COMET_SUBSCRIBE_SOCKET, and taken back after a detach when the daemon offers that. */
static uint8_t wire_flags(const comet *c, const char *name, unsigned flags, uint32_t *owner_uid) {
        uint8_t wire = (uint8_t)(flags & COMET_SUBSCRIBE_WAIT);
        if (!(flags & COMET_SUBSCRIBE_ANY_OWNER) && name && implied_owner(name, owner_uid))
                wire |= 0x4;
        if (!(flags & COMET_SUBSCRIBE_SOCKET) && c && (c->features & FEATURE_MAPPED_RINGS))
                wire |= SUBSCRIBE_MAPPED;
        /* Detached from its ring, the reader takes it back once it caught up (mapped.c). */
        if ((wire & SUBSCRIBE_MAPPED) && (c->features & FEATURE_RING_RETURN))
                wire |= SUBSCRIBE_RETURN;
        return wire;
}

static int subscribe(comet *c, const char *name, uint8_t flags, comet_position position, uint64_t argument,
                     uint64_t epoch, uint32_t owner_uid, comet_message_handler on_message, comet_end_handler on_end,
                     void *userdata, uint32_t *ret_subscription) {
        if (!c || !on_message || (unsigned)position > COMET_FROM_LAST)
                return -EINVAL;
        uint32_t id;
        size_t mark;
        int r = begin_subscription(c, name, OP_SUBSCRIBE, &id, &mark);
        if (r < 0)
                return r;
        if ((r = put_u8(&c->out, flags)) < 0 || (r = put_u8(&c->out, (uint8_t)position)) < 0 ||
            (r = put_u64(&c->out, argument)) < 0 || (r = put_u64(&c->out, epoch)) < 0 || (r = put_str(&c->out, name)) < 0 ||
            ((flags & 0x4) && (r = put_u32(&c->out, owner_uid)) < 0))
                return r;
        frame_end(&c->out, mark);
        return finish_subscribe(c, id, (flags & 0x2) != 0, name, flags, owner_uid, on_message, on_end, userdata, ret_subscription);
}

COMET_PUBLIC int comet_external_channel(comet *c, const char *address, const char *name, uint32_t history, int newest,
                                        comet_message_handler on_message, comet_end_handler on_end, void *userdata,
                                        uint32_t *ret_subscription) {
        if (!c || !on_message || !address || !*address)
                return -EINVAL;
        uint32_t id;
        size_t mark;
        int r = begin_subscription(c, name, OP_SUBSCRIBE_EXTERNAL, &id, &mark);
        if (r < 0)
                return r;
        if ((r = put_u8(&c->out, newest ? 1 : 0)) < 0 || (r = put_u32(&c->out, history)) < 0 ||
            (r = put_str(&c->out, address)) < 0 || (r = put_str(&c->out, name)) < 0)
                return r;
        frame_end(&c->out, mark);
        return finish_subscribe(c, id, 0, NULL, 0, 0, on_message, on_end, userdata, ret_subscription);
}

static int finish_subscribe(comet *c, uint32_t id, int is_private, const char *name, uint8_t flags, uint32_t owner_uid,
                            comet_message_handler on_message, comet_end_handler on_end, void *userdata,
                            uint32_t *ret_subscription) {
        int r;
        uint8_t reply[29];
        size_t len = 0;
        if ((r = await_answer(c, id, reply, sizeof reply, &len)) < 0)
                return r;
        if (len < 21)
                return -EBADMSG;
        uint32_t sub = be32(reply);
        uint64_t next = be64(reply + 13);
        char *copy = NULL;
        if (name && !(copy = strdup(name)))
                return -ENOMEM;
        struct subscription s = {
                .server_id = sub, .is_private = is_private, .acked = next ? next - 1 : 0, .ack_sent = next ? next - 1 : 0,
                .name = copy, .flags = flags, .pinned_owner = owner_uid, .epoch = be64(reply + 5), .last = next ? next - 1 : 0,
                .on_message = on_message, .on_end = on_end, .userdata = userdata,
                /* Daemons before owners end the reply at 21 bytes. */
                .owner_uid = len >= 29 ? be32(reply + 21) : UINT32_MAX, .owner_gid = len >= 29 ? be32(reply + 25) : UINT32_MAX};
        if ((r = add_sub(c, &s, ret_subscription)) < 0)
                free(copy);
        return r;
}

COMET_PUBLIC int comet_subscribe(comet *c, const char *name, comet_position position, uint64_t argument, uint64_t epoch,
                                 unsigned flags, comet_message_handler on_message, comet_end_handler on_end, void *userdata,
                                 uint32_t *ret_subscription) {
        if (flags & ~(COMET_SUBSCRIBE_WAIT | COMET_SUBSCRIBE_ANY_OWNER | COMET_SUBSCRIBE_SOCKET))
                return -EINVAL;
        uint32_t owner = 0;
        uint8_t wire = wire_flags(c, name, flags, &owner);
        return subscribe(c, name, wire, position, argument, epoch, owner, on_message, on_end, userdata, ret_subscription);
}

COMET_PUBLIC int comet_subscribe_owned(comet *c, const char *name, comet_position position, uint64_t argument,
                                       uint64_t epoch, unsigned flags, uint32_t owner_uid, comet_message_handler on_message,
                                       comet_end_handler on_end, void *userdata, uint32_t *ret_subscription) {
        if (flags & ~(COMET_SUBSCRIBE_WAIT | COMET_SUBSCRIBE_SOCKET))
                return -EINVAL;
        uint32_t unused = 0;
        uint8_t wire = (uint8_t)(wire_flags(c, NULL, flags, &unused) | 0x4);
        return subscribe(c, name, wire, position, argument, epoch, owner_uid, on_message, on_end, userdata, ret_subscription);
}

COMET_PUBLIC int comet_get_subscription_owner(comet *c, uint32_t subscription, uint32_t *ret_uid, uint32_t *ret_gid) {
        if (!c)
                return -EINVAL;
        struct subscription *s = find_local(c, subscription);
        if (!s)
                return -COMET_E_NO_SUCH_SUBSCRIPTION;
        if (s->owner_uid == UINT32_MAX)
                return -ENODATA;
        if (ret_uid)
                *ret_uid = s->owner_uid;
        if (ret_gid)
                *ret_gid = s->owner_gid;
        return 0;
}

COMET_PUBLIC int comet_subscribe_private(comet *c, const char *name, comet_message_handler on_message,
                                         comet_end_handler on_end, void *userdata, uint32_t *ret_subscription) {
        return subscribe(c, name, 0x2, COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, userdata, ret_subscription);
}

/* Writes an UNSUBSCRIBE of `subscription` (after its pending acknowledgements), up to frame_end(). */
static int unsubscribe_frame(comet *c, uint32_t subscription, uint32_t *id, size_t *mark) {
        if (!c)
                return -EINVAL;
        struct subscription *s = find_local(c, subscription);
        if (!s)
                return -COMET_E_NO_SUCH_SUBSCRIPTION;
        uint32_t server_id = s->server_id;
        int r = queue_acks(c);
        if (r < 0 || (r = pending_reserve(c)) < 0 || (r = request_begin(c, OP_UNSUBSCRIBE, id, mark)) < 0)
                return r;
        return put_u32(&c->out, server_id);
}

COMET_PUBLIC int comet_unsubscribe(comet *c, uint32_t subscription) {
        uint32_t id;
        size_t mark;
        int r = unsubscribe_frame(c, subscription, &id, &mark);
        if (r < 0)
                return r;
        frame_end(&c->out, mark);
        remove_sub(c, subscription);
        return await_answer(c, id, NULL, 0, NULL);
}


/* ---- Consumer requests without waiting ----------------------------------------------------- */

static int subscribe_async(comet *c, const char *name, uint8_t flags, comet_position position, uint64_t argument,
                           uint64_t epoch, uint32_t owner_uid, comet_message_handler on_message, comet_end_handler on_end, void *userdata,
                           comet_done_handler done, void *done_userdata) {
        if (!c || !on_message || (unsigned)position > COMET_FROM_LAST)
                return -EINVAL;
        uint32_t id;
        size_t mark;
        int r = check_name(name);
        if (r < 0 || (r = pending_reserve(c)) < 0 || (r = request_begin(c, OP_SUBSCRIBE, &id, &mark)) < 0 ||
            (r = put_u8(&c->out, flags)) < 0 || (r = put_u8(&c->out, (uint8_t)position)) < 0 ||
            (r = put_u64(&c->out, argument)) < 0 || (r = put_u64(&c->out, epoch)) < 0 || (r = put_str(&c->out, name)) < 0 ||
            ((flags & 0x4) && (r = put_u32(&c->out, owner_uid)) < 0))
                return r;
        char *copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        struct pending *p = send_async(c, id, mark, REQ_SUBSCRIBE, done, done_userdata);
        p->name = copy;
        p->flags = flags;
        p->pinned_owner = owner_uid;
        p->is_private = (flags & 0x2) != 0;
        p->on_message = on_message;
        p->on_end = on_end;
        p->userdata = userdata;
        return 0;
}

COMET_PUBLIC int comet_subscribe_async(comet *c, const char *name, comet_position position, uint64_t argument,
                                       uint64_t epoch, unsigned flags, comet_message_handler on_message,
                                       comet_end_handler on_end, void *userdata, comet_done_handler done,
                                       void *done_userdata) {
        if (flags & ~(COMET_SUBSCRIBE_WAIT | COMET_SUBSCRIBE_ANY_OWNER | COMET_SUBSCRIBE_SOCKET))
                return -EINVAL;
        uint32_t owner = 0;
        uint8_t wire = wire_flags(c, name, flags, &owner);
        return subscribe_async(c, name, wire, position, argument, epoch, owner, on_message, on_end, userdata, done,
                               done_userdata);
}

COMET_PUBLIC int comet_subscribe_private_async(comet *c, const char *name, comet_message_handler on_message,
                                               comet_end_handler on_end, void *userdata, comet_done_handler done,
                                               void *done_userdata) {
        return subscribe_async(c, name, 0x2, COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, userdata, done, done_userdata);
}

COMET_PUBLIC int comet_unsubscribe_async(comet *c, uint32_t subscription, comet_done_handler done, void *userdata) {
        uint32_t id;
        size_t mark;
        int r = unsubscribe_frame(c, subscription, &id, &mark);
        if (r < 0)
                return r;
        send_async(c, id, mark, REQ_UNSUBSCRIBE, done, userdata);
        remove_sub(c, subscription);
        return 0;
}
