/* libcomet against a real cometd: every operation and error path.
 * Usage: test_client SOCKET */
#include "comet.h"
#include "test.h"

#include <errno.h>
#include <pwd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *sock;

struct inbox {
        uint64_t sequences[4096];
        char last[128];
        size_t count;
        comet_end end;
        uint64_t end_sequence;
        uint64_t refuse_after; /* private: leave messages after this sequence unacknowledged (0: none) */
};

static int on_message(comet *c, uint32_t sub, uint64_t seq, const void *data, size_t size, void *userdata) {
        (void)c, (void)sub;
        struct inbox *in = userdata;
        if (in->count < 4096)
                in->sequences[in->count] = seq;
        in->count++;
        snprintf(in->last, sizeof in->last, "%.*s", (int)size, (const char *)data);
        return in->refuse_after && seq > in->refuse_after ? -1 : 0;
}

static void on_end(comet *c, uint32_t sub, comet_end reason, uint64_t seq, void *userdata) {
        (void)c, (void)sub;
        struct inbox *in = userdata;
        in->end = reason;
        in->end_sequence = seq;
}

/* Runs `c`'s event loop the way an application's poll() loop would, until `done` or 5 s. */
static void pump(comet *c, const size_t *count, size_t want, const comet_end *end) {
        for (int i = 0; i < 500; i++) {
                if ((count && *count >= want) || (end && *end))
                        return;
                struct pollfd p = {.fd = comet_get_fd(c), .events = (short)comet_get_events(c)};
                uint64_t deadline;
                comet_get_timeout(c, &deadline);
                poll(&p, 1, deadline == UINT64_MAX ? 10 : 0);
                if (comet_process(c) < 0)
                        return;
        }
}

static comet *connect_or_die(void) {
        comet *c = NULL;
        int r = comet_connect(&c, sock);
        if (r < 0) {
                fprintf(stderr, "cannot connect to %s: %s\n", sock, comet_strerror(r));
                exit(2);
        }
        return c;
}

static void test_connect_errors(void) {
        comet *c = (comet *)0x1;
        int r = comet_connect(&c, "/nonexistent/comet.sock");
        check(r == -ENOENT && c == (comet *)0x1, "no daemon: -ENOENT, ret untouched");
        check(comet_unref(NULL) == NULL, "unref accepts NULL");
        check(strstr(comet_strerror(-COMET_E_CHANNEL_FULL), "full") != NULL, "strerror names comet codes");
        check(strcmp(comet_strerror(-ENOENT), strerror(ENOENT)) == 0, "strerror names errno codes");
        check(strcmp(comet_version(), COMET_VERSION_STRING) == 0, "version");

        /* A peer that hangs up during the handshake. */
        char dir[] = "/tmp/comet-ctest-XXXXXX";
        mkdtemp(dir);
        char path[128];
        snprintf(path, sizeof path, "%s/hangup.sock", dir);
        int l = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strcpy(a.sun_path, path);
        bind(l, (struct sockaddr *)&a, sizeof a);
        listen(l, 1);
        if (fork() == 0) {
                int fd = accept(l, NULL, NULL);
                close(fd);
                _exit(0);
        }
        r = comet_connect(&c, path);
        check(r == -ECONNRESET || r == -EPIPE, "peer hangs up: -ECONNRESET or -EPIPE (%s)", comet_strerror(r));
        close(l);
        unlink(path);
        rmdir(dir);
}

static void test_site_channel_in_a_poll_loop(void) {
        comet *producer = connect_or_die(), *consumer = connect_or_die();
        uint64_t ch = 0;
        check(comet_create(producer, "c.news", 5000, &ch) == 0, "create");
        check(comet_create(producer, "c.news", 0, NULL) == -COMET_E_CHANNEL_EXISTS, "duplicate name refused");
        check(strlen(comet_last_error_message(producer)) > 0, "the daemon's message is kept");
        check(comet_create(producer, "bad name", 0, NULL) == -COMET_E_INVALID_NAME, "bad name refused by the daemon");
        check(comet_create(producer, "", 0, NULL) == -COMET_E_INVALID_NAME, "empty name refused");

        struct inbox in = {0};
        uint32_t sub = 0;
        check(comet_subscribe(consumer, "c.news", COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &in, &sub) == 0, "subscribe");
        char text[32];
        for (int i = 1; i <= 1000; i++) {
                snprintf(text, sizeof text, "m%d", i);
                if (comet_push(producer, ch, text, strlen(text)) < 0)
                        break;
        }
        check(comet_flush(producer) == 0, "flush pushes");
        pump(consumer, &in.count, 1000, NULL);
        int ordered = in.count == 1000;
        for (size_t i = 0; ordered && i < 1000; i++)
                ordered = in.sequences[i] == i + 1;
        check(ordered, "1000 messages in order through poll/get_fd/get_events/process (%zu)", in.count);
        check(strcmp(in.last, "m1000") == 0, "payloads intact");

        struct inbox last3 = {0};
        check(comet_subscribe(consumer, "c.news", COMET_FROM_LAST, 3, 0, 0, on_message, on_end, &last3, NULL) == 0,
              "subscribe last 3");
        pump(consumer, &last3.count, 3, NULL);
        check(last3.count == 3 && last3.sequences[0] == 998, "exactly the 3 most recent");

        check(comet_subscribe(consumer, "c.news", COMET_FROM_SEQUENCE, 5, 42, 0, on_message, on_end, &last3, NULL) ==
                      -COMET_E_EPOCH_MISMATCH,
              "stale epoch refused");
        check(comet_subscribe(consumer, "c.news", COMET_FROM_SEQUENCE, 5000, 0, 0, on_message, on_end, &last3, NULL) ==
                      -COMET_E_POSITION_AHEAD,
              "position ahead refused");
        check(comet_subscribe(consumer, "c.none", COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &last3, NULL) ==
                      -COMET_E_NO_SUCH_CHANNEL,
              "missing channel refused without WAIT");
        check(comet_subscribe(consumer, "c.news", COMET_FROM_NEXT, 0, 0, 0x80, on_message, on_end, &last3, NULL) == -EINVAL,
              "unknown flag refused locally");

        /* Another connection may not push to it; async refusals reach the error handler. */
        comet *intruder = connect_or_die();
        check(comet_push_sync(intruder, ch, "x", 1, NULL) == -COMET_E_NOT_OWNER, "push to another's channel: NOT_OWNER");
        intruder = comet_unref(intruder);

        uint64_t seq = 0;
        check(comet_push_sync(producer, ch, "sync", 4, &seq) == 0 && seq == 1001, "push_sync returns the sequence");
        check(comet_close_channel(producer, ch) == 0, "close");
        pump(consumer, NULL, 0, &in.end);
        check(in.end == COMET_END_CLOSED && in.end_sequence == 1001 && in.count == 1001, "everything, then CLOSED");
        check(comet_unsubscribe(consumer, sub) == -COMET_E_NO_SUCH_SUBSCRIPTION, "ended subscription is gone");
        comet_unref(producer);
        comet_unref(consumer);
}

/* Mapped by default (the daemon offers it): the same messages, from shared memory, across the
 * ring's growth; COMET_SUBSCRIBE_SOCKET reads the socket; a mapped reader of the producer's user
 * holds it (a 50-message ring, 3000 pushes, nothing lost); CLOSED as usual. */
static void test_mapped_readers(void) {
        comet *producer = connect_or_die(), *consumer = connect_or_die();
        uint64_t ch = 0, small = 0;
        check(comet_create(producer, "c.mapped", 100000, &ch) == 0 && comet_create(producer, "c.tight", 50, &small) == 0,
              "create");
        struct inbox mapped = {0}, socket_in = {0}, tight = {0};
        uint32_t m = 0, s = 0, t = 0;
        check(comet_subscribe(consumer, "c.mapped", COMET_FROM_OLDEST, 0, 0, 0, on_message, on_end, &mapped, &m) == 0,
              "subscribe (mapped by default)");
        check(comet_subscribe(consumer, "c.mapped", COMET_FROM_OLDEST, 0, 0, COMET_SUBSCRIBE_SOCKET, on_message, on_end,
                              &socket_in, &s) == 0,
              "subscribe with COMET_SUBSCRIBE_SOCKET");
        check(comet_subscribe(consumer, "c.tight", COMET_FROM_OLDEST, 0, 0, 0, on_message, on_end, &tight, &t) == 0,
              "subscribe to a 50-message ring");
        char text[64];
        for (int i = 1; i <= 3000; i++) {
                snprintf(text, sizeof text, "m%d %0*d", i, i % 200, 0);
                if (comet_push(producer, ch, text, strlen(text)) < 0 || comet_push(producer, small, text, strlen(text)) < 0)
                        break;
        }
        /* The daemon holds the producer for the tight ring's reader: both sides run, as two
         * processes' loops would, until everything is read. */
        for (int i = 0; i < 5000 && (mapped.count < 3000 || socket_in.count < 3000 || tight.count < 3000); i++) {
                struct pollfd p[2] = {{.fd = comet_get_fd(producer), .events = (short)comet_get_events(producer)},
                                      {.fd = comet_get_fd(consumer), .events = (short)comet_get_events(consumer)}};
                poll(p, 2, 10);
                comet_process(producer);
                comet_process(consumer);
        }
        check(comet_flush(producer) == 0, "every push applied");
        pump(consumer, &tight.count, 3000, NULL);
        check(comet_subscription_is_mapped(consumer, m) == 1, "the default subscription is mapped");
        check(comet_subscription_is_mapped(consumer, s) == 0, "COMET_SUBSCRIBE_SOCKET reads the socket");
        int ordered = mapped.count == 3000 && socket_in.count == 3000;
        for (size_t i = 0; ordered && i < 3000; i++)
                ordered = mapped.sequences[i] == i + 1 && socket_in.sequences[i] == i + 1;
        check(ordered, "3000 messages in order, mapped and from the socket (%zu, %zu)", mapped.count, socket_in.count);
        check(strcmp(mapped.last, socket_in.last) == 0 && strncmp(mapped.last, "m3000 ", 6) == 0, "the same payloads");
        check(tight.count == 3000 && tight.end == 0, "a mapped reader of the producer's user loses nothing (%zu, end %d)",
              tight.count, (int)tight.end);
        check(comet_subscription_is_mapped(consumer, 9999) == -COMET_E_NO_SUCH_SUBSCRIPTION, "unknown subscription");
        check(comet_close_channel(producer, ch) == 0, "close");
        pump(consumer, NULL, 0, &mapped.end);
        check(mapped.end == COMET_END_CLOSED && mapped.end_sequence == 3000, "a mapped reader ends with CLOSED");
        comet_unref(producer);
        comet_unref(consumer);
}

/* A mapped reader that falls behind its small ring is detached to the socket (nothing lost), and
 * once it has caught up the daemon gives it its ring back (SUBSCRIBE RETURN, comet 0.9.2): the
 * messages after that come from the mapping again, every one once, in order. */
static void test_mapped_reader_returns(void) {
        comet *producer = connect_or_die(), *consumer = connect_or_die();
        uint64_t ch = 0;
        check(comet_create(producer, "c.back", 50, &ch) == 0, "create a 50-message ring");
        struct inbox in = {0};
        uint32_t sub = 0;
        check(comet_subscribe(consumer, "c.back", COMET_FROM_OLDEST, 0, 0, 0, on_message, on_end, &in, &sub) == 0, "subscribe");
        pump(consumer, NULL, 0, NULL);
        check(comet_subscription_is_mapped(consumer, sub) == 1, "it starts on the ring");
        char text[32];
        /* The reader does not read while 500 go in: it is detached, and handed them over the socket. */
        for (int i = 1; i <= 500; i++) {
                snprintf(text, sizeof text, "m%d", i);
                check(comet_push(producer, ch, text, strlen(text)) >= 0, "push %d", i);
        }
        check(comet_flush(producer) == 0, "every push applied");
        pump(consumer, &in.count, 500, NULL);
        check(in.count == 500 && comet_subscription_is_mapped(consumer, sub) == 0, "detached, it read all 500 from the socket (%zu)",
              in.count);
        /* Caught up: the next pushes find it with nothing waiting, and it goes back to the ring. */
        int back = 0;
        for (int i = 501; i <= 700; i++) {
                snprintf(text, sizeof text, "m%d", i);
                check(comet_push(producer, ch, text, strlen(text)) >= 0 && comet_flush(producer) == 0, "push %d", i);
                usleep(2000);
                pump(consumer, &in.count, (size_t)i, NULL);
                back = back || comet_subscription_is_mapped(consumer, sub) == 1;
        }
        check(back && comet_subscription_is_mapped(consumer, sub) == 1, "back on its ring once caught up");
        int ordered = in.count == 700;
        for (size_t i = 0; ordered && i < 700; i++)
                ordered = in.sequences[i] == i + 1;
        check(ordered && strcmp(in.last, "m700") == 0, "700 messages once each, in order (%zu)", in.count);
        check(comet_close_channel(producer, ch) == 0, "close");
        pump(consumer, NULL, 0, &in.end);
        check(in.end == COMET_END_CLOSED && in.end_sequence == 700, "CLOSED from the ring");
        comet_unref(producer);
        comet_unref(consumer);
}

static int async_error_seen;
static void record_error(comet *c, uint64_t channel, int error, void *userdata) {
        (void)c, (void)channel, (void)userdata;
        async_error_seen = error;
}

static void test_async_errors_and_backpressure(void) {
        comet *owner = connect_or_die(), *other = connect_or_die();
        uint64_t ch;
        comet_create(owner, "c.owned", 10, &ch);
        comet_set_error_handler(other, record_error, NULL);
        check(comet_push(other, ch, "x", 1) == 0, "async push queued");
        comet_flush(other);
        for (int i = 0; i < 100 && !async_error_seen; i++) {
                comet_wait(other, 50000);
                comet_process(other);
        }
        check(async_error_seen == -COMET_E_NOT_OWNER, "async refusal reaches the error handler");

        /* Never reading answers (one per push here): the daemon stops reading, the output fills,
         * push says -EAGAIN. (Coalesced comet_push() calls get one answer per batch, so a daemon
         * that keeps up absorbs them without answers piling up.) */
        char big[1024];
        memset(big, 'b', sizeof big);
        int r = 0, n = 0;
        while (n < 200000 && (r = comet_push_async(owner, ch, big, sizeof big, NULL, NULL)) == 0)
                n++;
        check(r == -EAGAIN, "back-pressure: -EAGAIN after %d pushes, never blocking", n);
        uint64_t seq = 0;
        check(comet_push_sync(owner, ch, "after", 5, &seq) == 0 && seq == (uint64_t)n + 1, "drains, then pushes again");
        check(comet_push(owner, ch, NULL, 3) == -EINVAL, "NULL payload with a size refused");
        comet_unref(owner);
        comet_unref(other);
}

static void test_wait_and_newest(void) {
        comet *consumer = connect_or_die(), *producer = connect_or_die();
        struct inbox in = {0};
        check(comet_subscribe(consumer, "c.later", COMET_FROM_NEXT, 0, 0, COMET_SUBSCRIBE_WAIT, on_message, on_end, &in, NULL) == 0,
              "WAIT subscription to a missing channel");
        uint64_t ch;
        comet_create(producer, "c.later", 0, &ch);
        comet_push_sync(producer, ch, "first", 5, NULL);
        pump(consumer, &in.count, 1, NULL);
        check(in.count == 1 && in.sequences[0] == 1, "starts at the new channel's first message");

        uint64_t newest;
        check(comet_create_newest(producer, "c.level", &newest) == 0, "create_newest");
        comet_push_sync(producer, newest, "10", 2, NULL);
        comet_push_sync(producer, newest, "20", 2, NULL);
        struct inbox level = {0};
        comet_subscribe(consumer, "c.level", COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &level, NULL);
        pump(consumer, &level.count, 1, NULL);
        check(level.count == 1 && strcmp(level.last, "20") == 0 && level.sequences[0] == 2, "newest: the current value at once");
        comet_unref(consumer);
        comet_unref(producer);
}

/* Owners: the creator's uid is reported, and a pinned subscription refuses anyone else. */
static void test_owner_pinning(void) {
        comet *consumer = connect_or_die(), *producer = connect_or_die();
        uint64_t ch;
        comet_create(producer, "c.owned", 0, &ch);
        struct inbox in = {0};
        uint32_t sub = 0, uid = 1, gid = 1;
        check(comet_subscribe_owned(consumer, "c.owned", COMET_FROM_NEXT, 0, 0, 0, getuid(), on_message, on_end, &in, &sub) == 0,
              "subscribe_owned to one's own channel");
        check(comet_get_subscription_owner(consumer, sub, &uid, &gid) == 0 && uid == getuid() && gid == getgid(),
              "the subscription reports its channel's owner");
        check(comet_subscribe_owned(consumer, "c.owned", COMET_FROM_NEXT, 0, 0, 0, getuid() + 4242, on_message, on_end, &in, NULL) ==
                      -COMET_E_OWNER_MISMATCH,
              "another owner is refused with OWNER_MISMATCH");
        /* A name in a user's namespace implies its owner (0.8): user.NAME.… only from user NAME. */
        char mine[64], others[64];
        snprintf(mine, sizeof mine, "user.%u.c", (unsigned)getuid());
        snprintf(others, sizeof others, "user.%u.c", (unsigned)getuid() + 4242);
        uint64_t ignored;
        comet_create(producer, mine, 0, &ignored);
        comet_create(producer, others, 0, &ignored);
        check(comet_subscribe(consumer, mine, COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &in, NULL) == 0,
              "user.UID.… created by that uid is read without a pin");
        check(comet_subscribe(consumer, others, COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &in, NULL) == -COMET_E_OWNER_MISMATCH,
              "user.UID.… created by another uid is refused with OWNER_MISMATCH without a pin");
        check(comet_subscribe(consumer, others, COMET_FROM_NEXT, 0, 0, COMET_SUBSCRIBE_ANY_OWNER, on_message, on_end, &in, NULL) == 0,
              "COMET_SUBSCRIBE_ANY_OWNER reads it anyway");
        check(comet_subscribe(consumer, others, COMET_FROM_NEXT, 0, 0, 0x400u, on_message, on_end, &in, NULL) == -EINVAL,
              "unknown flags are refused");
        if (getpwnam("nobody") && getuid() != getpwnam("nobody")->pw_uid) {
                uint64_t named;
                comet_create(producer, "user.nobody.c", 0, &named);
                check(comet_subscribe(consumer, "user.nobody.c", COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &in, NULL) ==
                              -COMET_E_OWNER_MISMATCH,
                      "user.nobody.… created by another user is refused (a user name)");
        }
        struct inbox waiting = {0};
        check(comet_subscribe_owned(consumer, "c.owned.later", COMET_FROM_NEXT, 0, 0, COMET_SUBSCRIBE_WAIT, getuid() + 4242, on_message,
                                    on_end, &waiting, &sub) == 0,
              "a pinned waiting subscription");
        check(comet_get_subscription_owner(consumer, sub, &uid, &gid) == -ENODATA, "no owner while waiting");
        uint64_t later;
        comet_create(producer, "c.owned.later", 0, &later);
        comet_push_sync(producer, later, "spoof", 5, NULL);
        pump(consumer, NULL, 0, &waiting.end);
        check(waiting.end == COMET_END_FAILED && waiting.end_sequence == COMET_E_OWNER_MISMATCH && waiting.count == 0,
              "a channel created by another uid ends the pinned waiting subscription before any message");
        comet_unref(consumer);
        comet_unref(producer);
}

static char offered[64];
static void on_offer(comet *c, uint64_t channel, const char *name, int kind, void *userdata) {
        (void)c, (void)channel, (void)kind, (void)userdata;
        snprintf(offered, sizeof offered, "%s", name);
}

static int pulls;
static void on_pull(comet *c, uint64_t channel, uint64_t pull, void *userdata) {
        (void)userdata;
        char text[32];
        snprintf(text, sizeof text, "pull %d", ++pulls);
        comet_answer(c, channel, pull, text, strlen(text));
}

static void test_private_resume_and_unlimited(void) {
        comet *consumer = connect_or_die(), *producer = connect_or_die();
        comet_session s;
        check(comet_get_session(consumer, &s) == 0 && s.id != 0, "session id readable");
        comet_set_offer_handler(consumer, on_offer, NULL);
        uint64_t ch;
        check(comet_create_private(producer, "c.mail", s.id, 100, &ch) == 0, "create_private for the session");
        for (int i = 0; i < 100 && !offered[0]; i++) {
                comet_wait(consumer, 20000);
                comet_process(consumer);
        }
        check(strcmp(offered, "c.mail") == 0, "the session is offered the channel");
        for (int i = 1; i <= 10; i++) {
                char t[16];
                snprintf(t, sizeof t, "p%d", i);
                comet_push(producer, ch, t, strlen(t));
        }
        comet_flush(producer);
        struct inbox in = {.refuse_after = 4}; /* messages 5..10 stay unacknowledged */
        check(comet_subscribe_private(consumer, "c.mail", on_message, on_end, &in, NULL) == 0, "subscribe_private");
        check(comet_subscribe_private(consumer, "c.mail", on_message, on_end, &in, NULL) == -COMET_E_ALREADY_SUBSCRIBED,
              "read once");
        pump(consumer, &in.count, 10, NULL);
        comet_process(consumer);
        comet_flush(consumer);
        comet *other = connect_or_die();
        struct inbox stolen = {0};
        check(comet_subscribe_private(other, "c.mail", on_message, on_end, &stolen, NULL) == -COMET_E_NO_SUCH_CHANNEL,
              "another session cannot read it");
        comet_unref(other);
        consumer = comet_unref(consumer);

        comet_session wrong = s;
        wrong.token[0] ^= 1;
        check(comet_connect_resume(&consumer, sock, &wrong) == -COMET_E_BAD_TOKEN, "wrong token refused");
        comet_session unknown = s;
        unknown.id ^= 0xff;
        check(comet_connect_resume(&consumer, sock, &unknown) == -COMET_E_NO_SUCH_SESSION, "unknown session refused");
        check(comet_connect_resume(&consumer, sock, &s) == 0, "resume with the token");
        offered[0] = 0;
        comet_set_offer_handler(consumer, on_offer, NULL);
        for (int i = 0; i < 100 && !offered[0]; i++) {
                comet_wait(consumer, 20000);
                comet_process(consumer);
        }
        check(strcmp(offered, "c.mail") == 0, "offered again after resume");
        struct inbox again = {0};
        check(comet_subscribe_private(consumer, "c.mail", on_message, on_end, &again, NULL) == 0, "subscribe again");
        pump(consumer, &again.count, 6, NULL);
        check(again.count == 6 && again.sequences[0] == 5 && again.sequences[5] == 10, "unacknowledged 5..10 come back, nothing lost");

        /* Full at exactly size. */
        uint64_t small;
        comet_create_private(producer, "c.small", s.id, 2, &small);
        check(comet_push_sync(producer, small, "1", 1, NULL) == 0 && comet_push_sync(producer, small, "2", 1, NULL) == 0,
              "size messages accepted");
        check(comet_push_sync(producer, small, "3", 1, NULL) == -COMET_E_CHANNEL_FULL, "size + 1: CHANNEL_FULL");

        /* Unlimited: the producer answers pulls. */
        uint64_t unl;
        check(comet_create_unlimited(producer, "c.count", s.id, on_pull, NULL, &unl) == 0, "create_unlimited");
        struct inbox counted = {0};
        comet_subscribe_private(consumer, "c.count", on_message, on_end, &counted, NULL);
        for (int i = 0; i < 500 && counted.count < 3; i++) {
                comet_process(producer);
                comet_process(consumer);
                usleep(2000);
        }
        check(counted.count >= 3, "pulled messages arrive (%zu)", counted.count);
        check(pulls <= (int)counted.count + 1, "no read-ahead: %d pulls for %zu messages", pulls, counted.count);

        struct timespec t0, t1;
        int ended = -1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        /* The consumer stays idle; the producer waits for that. */
        check(comet_wait_timeout(producer, s.id, 300, &ended) == 0 && ended == 0, "wait_timeout: inactive");
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        check(ms >= 250, "wait_timeout did not return before the inactivity (%ld ms)", ms);
        check(comet_wait_timeout(producer, 0x1234, 300, NULL) == -COMET_E_NO_SUCH_SESSION, "wait_timeout on no session");
        comet_unref(consumer);
        comet_unref(producer);
}

static void test_external(const char *upstream_path) {
        comet *producer = NULL, *reader = connect_or_die();
        check(comet_connect(&producer, upstream_path) == 0, "connect to the upstream daemon");
        uint64_t ch;
        comet_create(producer, "c.remote", 0, &ch);
        for (int i = 1; i <= 3; i++) {
                char t[8];
                snprintf(t, sizeof t, "r%d", i);
                comet_push_sync(producer, ch, t, strlen(t), NULL);
        }
        char address[256];
        snprintf(address, sizeof address, "unix:%s", upstream_path);
        struct inbox in = {0};
        check(comet_external_channel(reader, address, "c.remote", 2, 0, on_message, on_end, &in, NULL) == 0,
              "external_channel relays the upstream channel");
        comet_push_sync(producer, ch, "r4", 2, NULL);
        pump(reader, &in.count, 3, NULL);
        check(in.count == 3 && in.sequences[0] == 2 && in.sequences[2] == 4, "history 2 then live, upstream sequence numbers");
        comet_close_channel(producer, ch);
        pump(reader, NULL, 0, &in.end);
        check(in.end == COMET_END_CLOSED && in.end_sequence == 4, "upstream close reaches the local reader");
        snprintf(address, sizeof address, "unix:%s", sock);
        check(comet_external_channel(reader, address, "c.remote", 1, 0, on_message, on_end, &in, NULL) == -COMET_E_LOOP_DETECTED,
              "relaying from its own daemon: LOOP_DETECTED");
        check(comet_external_channel(reader, "/nonexistent.sock", "c.remote", 1, 0, on_message, on_end, &in, NULL) ==
                      -COMET_E_UPSTREAM_UNREACHABLE,
              "unreachable upstream");
        check(comet_external_channel(reader, "tcp:x", "c.remote", 1, 0, on_message, on_end, &in, NULL) == -COMET_E_INVALID_ADDRESS,
              "invalid address");
        comet_unref(producer);
        comet_unref(reader);
}


struct done_record {
        int calls;
        int result;
        uint64_t value;
};

static void record_done(comet *c, int result, uint64_t value, void *userdata) {
        (void)c;
        struct done_record *d = userdata;
        d->calls++;
        d->result = result;
        d->value = value;
}

/* Runs `c` until `d` completed, at most 5 s. */
static void pump_done(comet *c, const struct done_record *d) {
        for (int i = 0; i < 500 && d->calls == 0; i++) {
                comet_wait(c, 10000);
                if (comet_process(c) < 0)
                        return;
        }
}

static void test_batch_ping_list_sessions(void) {
        comet *producer = connect_or_die(), *reader = connect_or_die();
        uint64_t ch;
        check(comet_create(producer, "c.batch", 100, &ch) == 0, "create for batches");
        struct inbox in = {0};
        check(comet_subscribe(reader, "c.batch", COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &in, NULL) == 0, "subscribe");
        comet_message batch[3] = {{"one", 3}, {"two", 3}, {"three", 5}};
        check(comet_push_batch(producer, ch, batch, 3) == 0, "push_batch queues 3");
        check(comet_push_batch(producer, ch, NULL, 1) == -EINVAL, "push_batch without messages refused");
        int queued = 0;
        for (int i = 0; i < 500; i++)
                queued += comet_push(producer, ch, "x", 1) == 0;
        check(queued == 500, "500 coalesced pushes queue");
        check(comet_ping(producer) == 0, "ping: every push answered");
        uint64_t seq = 0;
        check(comet_push_sync(producer, ch, "last", 4, &seq) == 0 && seq == 504, "then push_sync gets sequence 504 (%llu)",
              (unsigned long long)seq);
        pump(reader, &in.count, 504, NULL);
        int ordered = in.count == 504;
        for (size_t i = 0; ordered && i < in.count; i++)
                ordered = in.sequences[i] == i + 1;
        check(ordered && strcmp(in.last, "last") == 0, "the reader got 504 messages in order (%zu)", in.count);

        comet_channel_info *list = NULL;
        size_t n = 0;
        check(comet_list(reader, &list, &n) == 0 && n >= 1, "list");
        int found = 0;
        for (size_t i = 0; i < n; i++)
                if (strcmp(list[i].name, "c.batch") == 0)
                        found = list[i].kind == 0 && list[i].scope == 0 && list[i].size == 100 && list[i].buffered == 100 &&
                                list[i].subscribers == 1 && list[i].last_sequence == 504 && list[i].owner_uid == getuid();
        check(found, "list shows the channel: size, buffered, subscribers, last sequence, owner");
        comet_free(list);

        comet_session_info *sessions = NULL;
        comet_session mine;
        comet_get_session(reader, &mine);
        check(comet_sessions(reader, &sessions, &n) == 0, "sessions");
        found = 0;
        for (size_t i = 0; i < n; i++)
                found |= sessions[i].id == mine.id && sessions[i].uid == getuid() && sessions[i].connections == 1;
        check(found, "sessions shows this connection's session");
        comet_free(sessions);

        /* Errors of pushes before a ping reach the error handler before comet_ping() returns. */
        async_error_seen = 0;
        comet_set_error_handler(reader, record_error, NULL);
        comet_push(reader, ch, "not mine", 8);
        check(comet_ping(reader) == 0 && async_error_seen == -COMET_E_NOT_OWNER, "ping is a barrier for push errors");
        comet_unref(producer);
        comet_unref(reader);
}

static int pulls_seen;
static void count_pull(comet *c, uint64_t channel, uint64_t pull, void *userdata) {
        (void)userdata;
        pulls_seen++;
        comet_answer(c, channel, pull, "pulled", 6);
}

static void test_async_calls(void) {
        comet *producer = connect_or_die(), *reader = connect_or_die();
        struct done_record created = {0}, subscribed = {0}, pushed = {0}, closed = {0}, unsubscribed = {0};
        struct inbox in = {0};
        check(comet_create_async(producer, "c.async", 10, record_done, &created) == 0, "create_async queued");
        check(comet_create_async(producer, "", 10, record_done, &created) == -COMET_E_INVALID_NAME && created.calls == 0,
              "create_async: a bad name is refused at once, no callback");
        pump_done(producer, &created);
        check(created.calls == 1 && created.result == 0 && created.value != 0, "create_async done with the handle");
        char foreign[64];
        snprintf(foreign, sizeof foreign, "user.%u.async", (unsigned)getuid() + 4242);
        struct done_record made = {0}, pinned = {0};
        comet_create_async(producer, foreign, 10, record_done, &made);
        pump_done(producer, &made);
        struct inbox nothing = {0};
        comet_subscribe_async(reader, foreign, COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &nothing, record_done, &pinned);
        pump_done(reader, &pinned);
        check(pinned.calls == 1 && pinned.result == -COMET_E_OWNER_MISMATCH,
              "subscribe_async pins the owner a user.UID.… name implies");
        struct done_record dup = {0};
        comet_create_async(producer, "c.async", 10, record_done, &dup);
        pump_done(producer, &dup);
        check(dup.calls == 1 && dup.result == -COMET_E_CHANNEL_EXISTS, "create_async refusal reaches done");

        check(comet_subscribe_async(reader, "c.async", COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &in, record_done,
                                    &subscribed) == 0, "subscribe_async queued");
        pump_done(reader, &subscribed);
        check(subscribed.calls == 1 && subscribed.result == 0 && subscribed.value != 0, "subscribe_async done with its id");
        check(comet_push_async(producer, created.value, "hello", 5, record_done, &pushed) == 0, "push_async queued");
        pump_done(producer, &pushed);
        check(pushed.result == 0 && pushed.value == 1, "push_async done with sequence 1");
        pump(reader, &in.count, 1, NULL);
        check(in.count == 1 && strcmp(in.last, "hello") == 0, "the async subscription gets the message");
        check(comet_unsubscribe_async(reader, (uint32_t)subscribed.value, record_done, &unsubscribed) == 0, "unsubscribe_async");
        pump_done(reader, &unsubscribed);
        check(unsubscribed.calls == 1 && unsubscribed.result == 0, "unsubscribe_async done");
        check(comet_close_channel_async(producer, created.value, record_done, &closed) == 0, "close_async queued");
        pump_done(producer, &closed);
        check(closed.calls == 1 && closed.result == 0, "close_async done");

        /* Private: create_private_async, subscribe_private_async, unlimited, wait_timeout_async, resume_async. */
        comet_session session;
        comet_get_session(reader, &session);
        struct done_record priv = {0}, psub = {0}, unl = {0}, waited = {0};
        struct inbox pin = {0};
        comet_create_private_async(producer, "c.async.private", session.id, 10, record_done, &priv);
        pump_done(producer, &priv);
        check(priv.result == 0 && priv.value >> 63 == 1, "create_private_async: a private handle");
        comet_subscribe_private_async(reader, "c.async.private", on_message, on_end, &pin, record_done, &psub);
        pump_done(reader, &psub);
        check(psub.result == 0, "subscribe_private_async");
        comet_push(producer, priv.value, "secret", 6);
        comet_flush(producer);
        pump(reader, &pin.count, 1, NULL);
        check(pin.count == 1 && strcmp(pin.last, "secret") == 0, "the private message arrives");
        comet_create_unlimited_async(producer, "c.async.unlimited", session.id, count_pull, NULL, record_done, &unl);
        pump_done(producer, &unl);
        check(unl.result == 0, "create_unlimited_async");
        comet_wait_timeout_async(producer, session.id, 100, record_done, &waited);
        for (int i = 0; i < 100 && waited.calls == 0; i++) {
                comet_wait(producer, 10000);
                comet_process(producer);
                comet_process(reader);
        }
        check(waited.calls == 1 && waited.result == 0 && waited.value == 0, "wait_timeout_async: inactive, not ended");

        comet *again = connect_or_die();
        struct done_record resumed = {0};
        check(comet_resume_async(again, &session, record_done, &resumed) == 0, "resume_async queued");
        pump_done(again, &resumed);
        comet_session now;
        comet_get_session(again, &now);
        check(resumed.result == 0 && now.id == session.id, "resume_async takes the session back");
        comet_unref(again);

        /* A request still waiting when the connection fails completes with the error. */
        comet *lost = connect_or_die();
        struct done_record never = {0};
        comet_wait_timeout_async(lost, session.id, 60000, record_done, &never);
        comet_flush(lost);
        shutdown(comet_get_fd(lost), SHUT_RDWR);
        for (int i = 0; i < 100 && never.calls == 0; i++)
                if (comet_process(lost) < 0)
                        break;
        check(never.calls == 1 && never.result < 0, "a pending request completes with the connection's error (%d)", never.result);
        comet_unref(lost);
        comet_unref(producer);
        comet_unref(reader);
}

int main(int argc, char **argv) {
        if (argc < 3) {
                fprintf(stderr, "usage: %s SOCKET UPSTREAM-SOCKET\n", argv[0]);
                return 2;
        }
        sock = argv[1];
        test_connect_errors();
        test_site_channel_in_a_poll_loop();
        test_mapped_readers();
        test_mapped_reader_returns();
        test_async_errors_and_backpressure();
        test_batch_ping_list_sessions();
        test_async_calls();
        test_wait_and_newest();
        test_owner_pinning();
        test_private_resume_and_unlimited();
        test_external(argv[2]);
        return report("libcomet");
}
