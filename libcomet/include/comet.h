/* comet.h — the C client library of comet, a local push service (cometd).
 *
 * One header, one library (-lcomet), nothing but libc. Talks protocol version 1
 * (docs/PROTOCOL.md) over a Unix stream socket.
 *
 * Conventions
 *  - Every function that can fail returns an int: >= 0 on success, a negative errno-style code on
 *    failure (-EINVAL, -ENOMEM, -ECONNREFUSED, ...) or a negative comet code (COMET_E_*, below)
 *    when the daemon refused the request. comet_strerror() names any of them; after a
 *    refusal, comet_last_error_message() holds the daemon's own words.
 *  - Constructors write their result through a `ret` out-parameter and touch it only on success.
 *  - comet_unref() accepts NULL and returns NULL.
 *  - A function that returns an error never also calls the callback it was given.
 *  - Blocking functions say so. Everything else never blocks.
 *  - Thread safety: a comet object is not thread-safe; use each from one thread at a time.
 *    Different objects may be used from different threads.
 *  - Strings are NUL-terminated UTF-8; payloads are byte ranges (pointer + length) that the
 *    library copies before returning; payloads handed to callbacks are valid only during the call.
 */
#ifndef COMET_H
#define COMET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define COMET_PUBLIC __attribute__((visibility("default")))
#else
#define COMET_PUBLIC
#endif

/* Version of this library, and the protocol version it speaks. */
#define COMET_VERSION_MAJOR 0
#define COMET_VERSION_MINOR 9
#define COMET_VERSION_PATCH 2
#define COMET_VERSION_STRING "0.9.2"
#define COMET_PROTOCOL_VERSION 1

/* Returns COMET_VERSION_STRING of the library actually loaded. */
COMET_PUBLIC const char *comet_version(void);

/* Negative comet codes: -(COMET_E_BASE + the protocol's error code, docs/PROTOCOL.md section 8).
 * Codes a newer daemon adds arrive as -(COMET_E_BASE + n) too. */
#define COMET_E_BASE 10000
#define COMET_E_UNSUPPORTED_VERSION (COMET_E_BASE + 1)
#define COMET_E_MALFORMED_FRAME (COMET_E_BASE + 2)
#define COMET_E_FRAME_TOO_LARGE (COMET_E_BASE + 3)
#define COMET_E_UNKNOWN_OPERATION (COMET_E_BASE + 4)
#define COMET_E_HANDSHAKE_REQUIRED (COMET_E_BASE + 5)
#define COMET_E_INVALID_NAME (COMET_E_BASE + 6)
#define COMET_E_INVALID_ARGUMENT (COMET_E_BASE + 7)
#define COMET_E_CHANNEL_EXISTS (COMET_E_BASE + 8)
#define COMET_E_NO_SUCH_CHANNEL (COMET_E_BASE + 9)
#define COMET_E_NOT_OWNER (COMET_E_BASE + 10)
#define COMET_E_CHANNEL_CLOSED (COMET_E_BASE + 11)
#define COMET_E_NO_SUCH_SUBSCRIPTION (COMET_E_BASE + 12)
#define COMET_E_EPOCH_MISMATCH (COMET_E_BASE + 13)
#define COMET_E_POSITION_AHEAD (COMET_E_BASE + 14)
#define COMET_E_LIMIT_EXCEEDED (COMET_E_BASE + 15)
#define COMET_E_CHANNEL_FULL (COMET_E_BASE + 16)
#define COMET_E_UNSUPPORTED (COMET_E_BASE + 17)
#define COMET_E_SHUTTING_DOWN (COMET_E_BASE + 18)
#define COMET_E_NO_SUCH_SESSION (COMET_E_BASE + 19)
#define COMET_E_BAD_TOKEN (COMET_E_BASE + 20)
#define COMET_E_WRONG_USER (COMET_E_BASE + 21)
#define COMET_E_ALREADY_SUBSCRIBED (COMET_E_BASE + 22)
#define COMET_E_SESSION_ENDED (COMET_E_BASE + 23)
#define COMET_E_PULL_NOT_REQUESTED (COMET_E_BASE + 24)
#define COMET_E_UPSTREAM_UNREACHABLE (COMET_E_BASE + 25)
#define COMET_E_LOOP_DETECTED (COMET_E_BASE + 26)
#define COMET_E_UPSTREAM_VERSION (COMET_E_BASE + 27)
#define COMET_E_INVALID_ADDRESS (COMET_E_BASE + 28)
#define COMET_E_QUOTA_EXCEEDED (COMET_E_BASE + 29)    /* a per-user quota, daemon-wide limit or the memory ceiling */
#define COMET_E_PERMISSION_DENIED (COMET_E_BASE + 30) /* the daemon's policy (or, for a relay, the file system) */
#define COMET_E_OWNER_MISMATCH (COMET_E_BASE + 31)    /* another uid created the channel than the one pinned (comet_subscribe_owned(), a user.NAME.… name), or one the policy's rule for the name does not allow */
#define COMET_E_TIMED_OUT (COMET_E_BASE + 32)         /* no HELLO in time, or idle holding nothing */
#define COMET_E_OUT_OF_ORDER (COMET_E_BASE + 33)      /* (0.6) a push behind a refused one, not applied */
#define COMET_E_INTERNAL (COMET_E_BASE + 255)

/* A static description of `error` (negative errno or -COMET_E_*). Never NULL. */
COMET_PUBLIC const char *comet_strerror(int error);

/* A connection to cometd. Opaque. Not thread-safe. */
typedef struct comet comet;

/* A session: the public id producers address private channels to, and the secret token that
 * resumes it. Keep the token private. */
typedef struct comet_session {
        uint64_t id;
        uint8_t token[16];
} comet_session;

/* Where a subscription starts (SEMANTICS.md, "Positions"). */
typedef enum comet_position {
        COMET_FROM_NEXT = 0,   /* only messages pushed after subscribing (argument ignored) */
        COMET_FROM_OLDEST = 1, /* the oldest message still buffered (argument ignored) */
        COMET_FROM_SEQUENCE = 2, /* sequence number `argument` (resume) */
        COMET_FROM_LAST = 3,   /* exactly the `argument` most recent messages */
        _COMET_POSITION_MAX = 0x7fffffff /* keeps the enum int-sized as it grows */
} comet_position;

/* Flags of comet_subscribe(). */
#define COMET_SUBSCRIBE_WAIT 0x1u /* if no channel has the name yet, wait for one */
/* (0.8) By default comet_subscribe() pins the owner a name implies: `user.NAME.…` is read only if
 * user NAME (a user name, or a uid in decimal) created it, as comet_subscribe_owned() with NAME's
 * uid (docs/POLICY.md). This flag turns that off. (The daemon's policy still refuses, with
 * -COMET_E_OWNER_MISMATCH, a channel whose creator the rule for its name does not allow; pin that
 * creator with comet_subscribe_owned() to read it anyway.) */
#define COMET_SUBSCRIBE_ANY_OWNER 0x100u
/* (0.9) By default a site channel is read from shared memory when the daemon offers it (a mapped
 * reader, docs/PROTOCOL.md §6.23): the handler gets the same messages, in the same order, copied
 * out of a read-only mapping of the channel's ring, and the same end events, with the same
 * guarantees (docs/SEMANTICS.md): the reader says how far it read in a page shared with the
 * daemon, and before the ring could move past a message it has not read, the daemon moves it
 * back to the socket, where it is handed messages up to its queue as a socket reader is (it ends
 * with COMET_END_FULL only where a socket reader would). A reader of the producer's user first
 * makes the producer wait when it falls a ring behind (for at most the daemon's reader grace; on
 * a ring of fewer than 4096 messages it is moved at once) — its ring is its only buffer, so a
 * channel read this way by the producer's own user wants a ring sized for its bursts; a reader of
 * another user never makes anyone wait and is moved a quarter ring before it would be overtaken.
 * The mapping needs a second, brief
 * connection to the daemon's socket per ring (RING). With this flag the subscription reads
 * MESSAGE frames from the socket instead. Private channels are never mapped. */
#define COMET_SUBSCRIBE_SOCKET 0x200u

/* Why a subscription ended (the `reason` of comet_end_handler). */
typedef enum comet_end {
        COMET_END_FULL = 1,   /* fell behind the ring; `sequence` is the oldest still buffered (Eliom's Channel_full) */
        COMET_END_CLOSED = 2, /* the channel closed after message `sequence` (Eliom's Channel_closed) */
        COMET_END_CONNECTION = 3, /* the connection ended; `sequence` is 0 */
        COMET_END_RESET = 4,  /* the channel was re-created; `sequence` is the NEW EPOCH (sequence numbers restarted) */
        COMET_END_FAILED = 5, /* ended with an error; `sequence` is its COMET_E_* code (e.g. COMET_E_OWNER_MISMATCH when a
                               * pinned waiting subscription's channel was created by another uid); the daemon's
                               * message is in comet_last_error_message() during the call */
        _COMET_END_MAX = 0x7fffffff
} comet_end;

/* Called for each message of a subscription, in sequence order. `data` is valid only during the
 * call. For a private subscription, returning >= 0 acknowledges the message (the daemon may then
 * forget it); returning < 0 leaves it unacknowledged, to be delivered again after a resume. */
typedef int (*comet_message_handler)(comet *c, uint32_t subscription, uint64_t sequence, const void *data,
                                     size_t size, void *userdata);

/* Called once when a subscription ends; no call for it follows. */
typedef void (*comet_end_handler)(comet *c, uint32_t subscription, comet_end reason, uint64_t sequence,
                                  void *userdata);

/* Called when a private channel is offered to this connection's session (after its creation,
 * or again after comet_connect_resume()). kind: 2 private, 3 unlimited. */
typedef void (*comet_offer_handler)(comet *c, uint64_t channel, const char *name, int kind, void *userdata);

/* Called when the reader of an unlimited channel this connection produces wants one more message:
 * answer with comet_answer(c, channel, pull, ...), now or later. After a reconnect the daemon may
 * ask again for a pull it asked before (same id), or forget it and ask a new one (after a crash):
 * an answer to a pull no longer outstanding is refused with COMET_E_PULL_NOT_REQUESTED (to the
 * error handler); give that message at the next pull instead (PROTOCOL.md §6.13). */
typedef void (*comet_pull_handler)(comet *c, uint64_t channel, uint64_t pull, void *userdata);

/* Called when something this connection sent without waiting failed (a comet_push() refused by
 * the daemon, e.g. -COMET_E_QUOTA_EXCEEDED: once per comet_push() call refused), or when one of
 * its channels ended without its close (-COMET_E_SESSION_ENDED). `channel` is 0 when unknown. */
typedef void (*comet_error_handler)(comet *c, uint64_t channel, int error, void *userdata);

/* (Since 0.3.0.) Completion of a request made without waiting (the *_async functions), called once
 * from comet_process() when the daemon answered, in the sd-bus call_async style. `result` is 0 on
 * success, else a negative code as the blocking form would return (also when the connection
 * failed first: then with its error, from whichever call noticed). `value` is what the blocking
 * form writes to its out-parameter: the channel handle (create), the subscription id (subscribe),
 * the sequence number (comet_push_async), 1 if the session ended (wait_timeout), else 0.
 * comet_unref() frees pending requests without calling their handlers. */
typedef void (*comet_done_handler)(comet *c, int result, uint64_t value, void *userdata);

/* (Since 0.3.0.) One message of comet_push_batch(). */
typedef struct comet_message {
        const void *data;
        size_t size;
} comet_message;

/* ---- Connections ---------------------------------------------------------------------------- */

/* Connects to cometd at `path` (NULL: $COMET_SOCKET, else /run/comet/comet.sock as root, else
 * $XDG_RUNTIME_DIR/comet/comet.sock) and performs the handshake. Blocking.
 * Returns 0, -ENOENT/-ECONNREFUSED when no daemon answers, -COMET_E_UNSUPPORTED_VERSION, ... */
COMET_PUBLIC int comet_connect(comet **ret, const char *path);

/* As comet_connect(), then takes back `session` (same uid only). Its private channels are then
 * offered again through the offer handler, which can only be set once this returns: the offers
 * are delivered by the first comet_process(). Blocking.
 * Returns -COMET_E_NO_SUCH_SESSION, -COMET_E_BAD_TOKEN or -COMET_E_WRONG_USER on refusal. */
COMET_PUBLIC int comet_connect_resume(comet **ret, const char *path, const comet_session *session);

/* (Since 0.5.0.) Reconnects by itself when the connection to cometd is lost (a crash or restart
 * of the daemon; docs/RESTARTS.md) with `enable` non-zero; off by default. The call that notices
 * the loss (comet_process(), or a blocking call) connects again, blocking, with a delay that
 * doubles from 20 ms to 2 s, for at most a minute; then sends HELLO, RESUME with this
 * connection's session, ADOPT for every channel this connection created (numbering goes on), and
 * every subscription again from just after its last message under its epoch (private ones from
 * the first unacknowledged message; messages handed on before are not handed on again).
 * Pushes are exactly once (since 0.6.0, with a daemon from 0.6.0): with reconnection on, every
 * comet_push(), comet_push_batch() and comet_push_async() to a channel this connection created
 * carries producer numbers (PUSH_NUMBERED, PROTOCOL.md §6.18) and is kept until answered; after a
 * reconnect those without an answer are sent again, in order, right after the ADOPTs and before
 * anything new, and the daemon skips what it had applied: each message lands once, and each
 * comet_push_async() handler is called once, with the sequence number the message got. A push
 * refused by the daemon (e.g. -COMET_E_QUOTA_EXCEEDED) takes with it the pushes already queued
 * behind it on that channel (each reported as -COMET_E_OUT_OF_ORDER): a channel's messages land
 * in order, without a gap. Other requests in flight when the connection broke fail with the
 * error (-ECONNRESET, -EPIPE): they may or may not have been applied; so do comet_push_sync()
 * and comet_answer(), for which comet_last_sequence() tells whether they landed. With a daemon
 * before 0.6.0 pushes fail like other requests. The call that reconnected returns that error too
 * (comet_process() returns 2 instead);
 * the descriptor keeps its number (epoll users add it again when comet_process() returns 2).
 * Subscriptions keep their ids. External channels end with COMET_END_CONNECTION. When the daemon
 * cannot be reached within the minute, everything fails as without reconnection. */
COMET_PUBLIC int comet_set_reconnect(comet *c, int enable);

/* (Since 0.5.0.) The sequence number of the last message in `channel`, a channel this connection
 * created (ADOPT, PROTOCOL.md §6.17): after a lost connection, pushes numbered up to it landed,
 * in order. Blocking. -COMET_E_NO_SUCH_CHANNEL for a channel this connection did not create. */
COMET_PUBLIC int comet_last_sequence(comet *c, uint64_t channel, uint64_t *ret_last);

/* Closes the connection (its channels close; its subscriptions end) and frees `c`.
 * Accepts NULL. Returns NULL. */
COMET_PUBLIC comet *comet_unref(comet *c);

/* Writes this connection's session (id and token) to `*ret`. */
COMET_PUBLIC int comet_get_session(comet *c, comet_session *ret);

/* The daemon's message for the last refused request on `c` (empty if none). Owned by `c`, valid
 * until the next call on `c`. */
COMET_PUBLIC const char *comet_last_error_message(comet *c);

/* ---- Event-loop integration ----------------------------------------------------------------- */

/* The connection's socket, to watch in your own poll/epoll/event loop. Owned by `c`. */
COMET_PUBLIC int comet_get_fd(comet *c);

/* The poll(2) events to watch for: POLLIN, plus POLLOUT while output is queued. */
COMET_PUBLIC int comet_get_events(comet *c);

/* When comet_process() must be called at the latest, in CLOCK_MONOTONIC microseconds, or
 * UINT64_MAX for no deadline. Writes to `*ret_usec`; returns 0. */
COMET_PUBLIC int comet_get_timeout(comet *c, uint64_t *ret_usec);

/* Does whatever can be done without blocking: writes queued output, reads, and calls the
 * handlers of what arrived. Returns > 0 if it did something (2: the connection was made again,
 * comet_set_reconnect()), 0 if there was nothing to do,
 * < 0 when the connection failed (-ECONNRESET when the daemon closed it). Never blocks. */
COMET_PUBLIC int comet_process(comet *c);

/* Blocks until the connection has something to process or `timeout_usec` passed
 * (UINT64_MAX: no limit). Returns > 0 if ready, 0 on timeout, < 0 on error. Blocking. */
COMET_PUBLIC int comet_wait(comet *c, uint64_t timeout_usec);

/* Blocks until all queued output is written. Blocking. */
COMET_PUBLIC int comet_flush(comet *c);

/* Handlers for events outside subscriptions. NULL removes one. */
COMET_PUBLIC int comet_set_offer_handler(comet *c, comet_offer_handler handler, void *userdata);
COMET_PUBLIC int comet_set_error_handler(comet *c, comet_error_handler handler, void *userdata);

/* ---- Producers ------------------------------------------------------------------------------ */

/* Creates a site channel (Eliom's create ~scope:site) owned by this connection, with a ring of
 * `size` messages (0: 1000). Writes its handle to `*ret_channel`. Blocking.
 * Returns -COMET_E_CHANNEL_EXISTS, -COMET_E_INVALID_NAME, ... */
COMET_PUBLIC int comet_create(comet *c, const char *name, uint32_t size, uint64_t *ret_channel);

/* Creates a newest channel (Eliom's create_newest): only the latest message is kept. Blocking. */
COMET_PUBLIC int comet_create_newest(comet *c, const char *name, uint64_t *ret_channel);

/* Creates a private channel for session `session` (Eliom's default client-process scope), at
 * most `size` (0: 1000) unacknowledged messages. Blocking. */
COMET_PUBLIC int comet_create_private(comet *c, const char *name, uint64_t session, uint32_t size,
                                      uint64_t *ret_channel);

/* Creates an unlimited channel (Eliom's create_unlimited) for session `session`: nothing is
 * buffered; `handler` is called at each pull, answer with comet_answer(). Blocking. */
COMET_PUBLIC int comet_create_unlimited(comet *c, const char *name, uint64_t session, comet_pull_handler handler,
                                        void *userdata, uint64_t *ret_channel);

/* Queues one message for `channel` and returns at once. Never blocks. Consecutive pushes to one
 * channel are coalesced into one PUSH_BATCH frame (up to 64 KiB), sent by the next
 * comet_process(), comet_flush() or blocking call, or as soon as 256 KiB are queued; the daemon
 * handles a batch as the same pushes one by one, except that a refusal (e.g.
 * -COMET_E_QUOTA_EXCEEDED) refuses the whole batch: the error handler is then called once per
 * comet_push() of it. Returns -EAGAIN when more than the output limit (4 MiB) stays queued after
 * writing what the socket takes: call comet_process() (which also reads the daemon's answers)
 * and retry. -EMSGSIZE when the message exceeds the daemon's largest frame. */
COMET_PUBLIC int comet_push(comet *c, uint64_t channel, const void *data, size_t size);

/* (Since 0.3.0.) As comet_push() for each of `count` messages, in order; either all are queued or
 * none (-EAGAIN, -EMSGSIZE, -EINVAL checked first). Never blocks. */
COMET_PUBLIC int comet_push_batch(comet *c, uint64_t channel, const comet_message *messages, size_t count);

/* (Since 0.3.0.) Pushes one message (a PUSH frame of its own) and calls `done` with its sequence
 * number or the refusal. Never blocks. */
COMET_PUBLIC int comet_push_async(comet *c, uint64_t channel, const void *data, size_t size, comet_done_handler done,
                                  void *userdata);

/* Pushes one message and waits for its sequence number (written to `*ret_sequence` if not
 * NULL). Blocking. */
COMET_PUBLIC int comet_push_sync(comet *c, uint64_t channel, const void *data, size_t size,
                                 uint64_t *ret_sequence);

/* Answers pull `pull` of unlimited channel `channel`. Queued like comet_push(); never blocks. */
COMET_PUBLIC int comet_answer(comet *c, uint64_t channel, uint64_t pull, const void *data, size_t size);

/* Closes `channel`: readers get what is buffered, then COMET_END_CLOSED. Blocking. */
COMET_PUBLIC int comet_close_channel(comet *c, uint64_t channel);

/* Eliom's wait_timeout: blocks until session `session` has had no activity on its private
 * channels for `timeout_ms`, or has ended (then `*ret_ended`, if not NULL, is 1). Blocking;
 * events that arrive meanwhile are delivered by the next comet_process(). */
COMET_PUBLIC int comet_wait_timeout(comet *c, uint64_t session, uint64_t timeout_ms, int *ret_ended);

/* ---- Consumers ------------------------------------------------------------------------------ */

/* Subscribes to the site channel `name` from `position`/`argument`; `epoch` 0 or the epoch last
 * seen (a different one fails with -COMET_E_EPOCH_MISMATCH). Messages go to `on_message`, the end
 * to `on_end` (may be NULL). Writes the subscription id to `*ret_subscription` if not NULL.
 * `flags`: COMET_SUBSCRIBE_WAIT, COMET_SUBSCRIBE_ANY_OWNER. (0.8) A name `user.NAME.…` is read
 * only from user NAME unless COMET_SUBSCRIBE_ANY_OWNER (-COMET_E_OWNER_MISMATCH otherwise).
 * (0.7) With COMET_SUBSCRIBE_WAIT, COMET_POSITION_FROM and an epoch, a channel that appears later
 * with that epoch (an import rebuilt after a restart) is read from `argument`; one with another
 * epoch ends the subscription with COMET_END_FAILED / COMET_E_EPOCH_MISMATCH.
 * Imports (another host's channel fed by comet-bridge, docs/FEDERATION.md) are read like any
 * channel; when an import is stalled, a reader that has every message it holds ends with
 * COMET_END_FAILED / COMET_E_UPSTREAM_UNREACHABLE (the message says why and after which
 * sequence): subscribe again from the next sequence with the epoch to go on when it is back.
 * Blocking until the daemon answers; messages are delivered by comet_process().
 * Returns -COMET_E_NO_SUCH_CHANNEL (without COMET_SUBSCRIBE_WAIT), -COMET_E_POSITION_AHEAD, ... */
COMET_PUBLIC int comet_subscribe(comet *c, const char *name, comet_position position, uint64_t argument,
                                 uint64_t epoch, unsigned flags, comet_message_handler on_message,
                                 comet_end_handler on_end, void *userdata, uint32_t *ret_subscription);

/* Subscribes to the private (or unlimited) channel `name` of this connection's session. Starts at
 * the first unacknowledged message; each message is acknowledged when `on_message` returns >= 0.
 * Blocking until the daemon answers. Returns -COMET_E_ALREADY_SUBSCRIBED, -COMET_E_NO_SUCH_CHANNEL. */
COMET_PUBLIC int comet_subscribe_private(comet *c, const char *name, comet_message_handler on_message,
                                         comet_end_handler on_end, void *userdata, uint32_t *ret_subscription);

/* Eliom's external_channel: reads channel `name` of another cometd at `address` (unix:/PATH or
 * /PATH), relayed by this connection's daemon with the upstream's sequence numbers and epoch.
 * (0.7) A NATS address (nats://, tls://) is refused with -COMET_E_UNSUPPORTED: cometd reaches no
 * network; comet-bridge imports NATS subjects under local names (docs/FEDERATION.md).
 * Starts with exactly the `history` (0 counts as 1) most recent messages; `newest` != 0 makes it
 * a latest-value channel. Ends with COMET_END_FULL, COMET_END_CLOSED or COMET_END_RESET (the
 * upstream channel was re-created). Blocking until the daemon answers.
 * Returns -COMET_E_UPSTREAM_UNREACHABLE, -COMET_E_NO_SUCH_CHANNEL, -COMET_E_UPSTREAM_VERSION,
 * -COMET_E_LOOP_DETECTED, -COMET_E_INVALID_ADDRESS, ... */
COMET_PUBLIC int comet_external_channel(comet *c, const char *address, const char *name, uint32_t history, int newest,
                                        comet_message_handler on_message, comet_end_handler on_end, void *userdata,
                                        uint32_t *ret_subscription);

/* (Since 0.2.0.) As comet_subscribe(), but only for a channel created by uid `owner_uid`: another creator is refused
 * with -COMET_E_OWNER_MISMATCH, and a waiting subscription (COMET_SUBSCRIBE_WAIT) whose channel is then
 * created by another uid ends with COMET_END_FAILED / COMET_E_OWNER_MISMATCH before any message.
 * A daemon without owners refuses the request with -COMET_E_INVALID_ARGUMENT. Blocking. */
COMET_PUBLIC int comet_subscribe_owned(comet *c, const char *name, comet_position position, uint64_t argument,
                                       uint64_t epoch, unsigned flags, uint32_t owner_uid, comet_message_handler on_message,
                                       comet_end_handler on_end, void *userdata, uint32_t *ret_subscription);

/* (Since 0.2.0.) Who created the channel `subscription` reads (uid and gid of its producer, from SO_PEERCRED).
 * Returns -ENODATA while a waiting subscription's channel does not exist yet or when the daemon
 * does not say, -COMET_E_NO_SUCH_SUBSCRIPTION for an unknown or ended subscription. Non-blocking. */
COMET_PUBLIC int comet_get_subscription_owner(comet *c, uint32_t subscription, uint32_t *ret_uid, uint32_t *ret_gid);

/* (0.9) 1 if `subscription` reads its channel's ring from shared memory now (a mapped reader,
 * COMET_SUBSCRIBE_SOCKET), 0 if it reads the socket (a private channel, a daemon that does not
 * map rings, a subscription not started yet, one the daemon detached from the ring because it
 * fell behind, or after the daemon's live upgrade until the next reconnect). A detached reader
 * reads the same messages from the socket; a 0.9.2 daemon gives it its ring back once it has
 * caught up (the library asks for that), and this returns 1 again from then on. -COMET_E_NO_SUCH_SUBSCRIPTION for an unknown or ended subscription. Non-blocking.
 * A mapped reader's fetch of the ring needs a second connection to the daemon's socket for a
 * moment (RING; a 0.9.1 daemon serves it even when the user holds every connection its quota
 * allows); if that fails the subscription ends with COMET_END_FAILED and the error. */
COMET_PUBLIC int comet_subscription_is_mapped(comet *c, uint32_t subscription);

/* Ends a subscription; its handlers are not called again. Blocking. */
COMET_PUBLIC int comet_unsubscribe(comet *c, uint32_t subscription);

/* ---- Requests without waiting (since 0.3.0) ------------------------------------------------- */

/* Each queues its request and returns at once (0, or an error found before sending: then `done`
 * is never called); the answer comes to `done` from comet_process(). Never block. */
COMET_PUBLIC int comet_create_async(comet *c, const char *name, uint32_t size, comet_done_handler done, void *userdata);
COMET_PUBLIC int comet_create_newest_async(comet *c, const char *name, comet_done_handler done, void *userdata);
COMET_PUBLIC int comet_create_private_async(comet *c, const char *name, uint64_t session, uint32_t size,
                                            comet_done_handler done, void *userdata);
/* The pull handler (with `pull_userdata`) is registered when the channel is created. */
COMET_PUBLIC int comet_create_unlimited_async(comet *c, const char *name, uint64_t session, comet_pull_handler handler,
                                              void *pull_userdata, comet_done_handler done, void *userdata);
COMET_PUBLIC int comet_close_channel_async(comet *c, uint64_t channel, comet_done_handler done, void *userdata);
COMET_PUBLIC int comet_wait_timeout_async(comet *c, uint64_t session, uint64_t timeout_ms, comet_done_handler done,
                                          void *userdata);
/* The subscription is registered (and `done` gets its id) when the daemon accepts it; its messages
 * follow. `userdata` goes to the message and end handlers, `done_userdata` to `done`. */
COMET_PUBLIC int comet_subscribe_async(comet *c, const char *name, comet_position position, uint64_t argument,
                                       uint64_t epoch, unsigned flags, comet_message_handler on_message,
                                       comet_end_handler on_end, void *userdata, comet_done_handler done,
                                       void *done_userdata);
COMET_PUBLIC int comet_subscribe_private_async(comet *c, const char *name, comet_message_handler on_message,
                                               comet_end_handler on_end, void *userdata, comet_done_handler done,
                                               void *done_userdata);
/* The subscription's handlers are not called again from the moment this returns 0. */
COMET_PUBLIC int comet_unsubscribe_async(comet *c, uint32_t subscription, comet_done_handler done, void *userdata);
/* Takes back `session` (same uid only) on this connection; its private channels are offered
 * again through the offer handler. */
COMET_PUBLIC int comet_resume_async(comet *c, const comet_session *session, comet_done_handler done, void *userdata);

/* PING: `done` is called once the daemon has answered every request sent before it (except
 * WAIT_TIMEOUTs and subscriptions waiting for their channel, which answer later): after every
 * error handler call for the pushes before it. */
COMET_PUBLIC int comet_ping_async(comet *c, comet_done_handler done, void *userdata);

/* Blocks until the daemon has answered every request sent before (as comet_ping_async()), calling
 * the handlers of everything that arrives meanwhile (messages, errors of earlier pushes) as
 * comet_process() does: when it returns 0, every comet_push() before it is in its channel or was
 * reported to the error handler. Blocking. Returns -EBUSY when called from a handler. */
COMET_PUBLIC int comet_ping(comet *c);

/* ---- Listing (since 0.3.0) ------------------------------------------------------------------ */

/* One channel as LIST shows it (docs/PROTOCOL.md 6.7). */
typedef struct comet_channel_info {
        char name[256];
        uint8_t kind;  /* 0 site, 1 newest, 2 private, 3 unlimited */
        uint8_t scope; /* 0 site, 1 client process (this connection's session) */
        uint32_t size;        /* ring size */
        uint32_t buffered;    /* messages in the ring (private: unacknowledged) */
        uint32_t subscribers; /* live subscriptions */
        uint64_t last_sequence;
        uint64_t epoch;
        uint32_t owner_uid, owner_gid; /* its creator; UINT32_MAX when the daemon does not say */
} comet_channel_info;

/* One session as SESSIONS shows it: a user sees its own, root all. */
typedef struct comet_session_info {
        uint64_t id;
        uint32_t uid;
        uint32_t connections;
        uint32_t private_channels;
        uint64_t idle_ms; /* since the last activity on its private channels */
} comet_session_info;

/* Every channel this connection may see, by name then scope (all pages). Writes a new array to
 * `*ret` (free it with comet_free()) and its length to `*ret_count`. Blocking. */
COMET_PUBLIC int comet_list(comet *c, comet_channel_info **ret, size_t *ret_count);

/* Every session this connection may see, by id (all pages), as comet_list(). Blocking. */
COMET_PUBLIC int comet_sessions(comet *c, comet_session_info **ret, size_t *ret_count);

/* Frees what comet_list() or comet_sessions() returned. Accepts NULL. */
COMET_PUBLIC void comet_free(void *p);

#ifdef __cplusplus
}
#endif

#endif /* COMET_H */
