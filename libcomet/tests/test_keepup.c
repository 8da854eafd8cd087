/* FULL only for readers that cannot keep up, through libcomet against a real cometd (not under
 * valgrind: it measures nothing, but it needs the real speed of both ends).
 *  1. A reader keeping up with a tight-loop publisher (another process) through 1,000,000 pushes
 *     at the default ring (1000) gets every message, in order, and no FULL.
 *  2. A reader that reads nothing while 100 MB are pushed gets what its queue held, then FULL
 *     with first_available = the oldest message the ring still holds.
 * Usage: test_keepup SOCKET */
#include "comet.h"
#include "test.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *sock;

struct reader {
        uint64_t count, next, bad;
        comet_end end;
        uint64_t end_sequence;
};

static int on_message(comet *c, uint32_t sub, uint64_t seq, const void *data, size_t size, void *userdata) {
        (void)c, (void)sub, (void)data, (void)size;
        struct reader *r = userdata;
        if (seq != r->next)
                r->bad++;
        r->next = seq + 1;
        r->count++;
        return 0;
}

static void on_end(comet *c, uint32_t sub, comet_end reason, uint64_t seq, void *userdata) {
        (void)c, (void)sub;
        struct reader *r = userdata;
        r->end = reason;
        r->end_sequence = seq;
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

/* A child process creates channel `name` (default ring), says so on `*created`, waits for a byte
 * on `*go`, pushes `n` messages of `size` bytes in a tight loop, waits until all are in
 * (comet_ping) and keeps the channel open until killed. */
static pid_t spawn_publisher(const char *name, uint64_t n, size_t size, int *created, int *go) {
        int up[2], down[2];
        if (pipe(up) < 0 || pipe(down) < 0)
                exit(2);
        pid_t pid = fork();
        if (pid == 0) {
                close(up[0]);
                close(down[1]);
                comet *c = connect_or_die();
                uint64_t channel;
                char byte;
                if (comet_create(c, name, 0, &channel) < 0 || write(up[1], "c", 1) != 1 || read(down[0], &byte, 1) != 1)
                        _exit(3);
                char payload[1024];
                memset(payload, 'p', sizeof payload);
                for (uint64_t i = 0; i < n; i++) {
                        int r;
                        while ((r = comet_push(c, channel, payload, size)) == -EAGAIN)
                                if (comet_wait(c, UINT64_MAX) < 0 || comet_process(c) < 0)
                                        _exit(4);
                        if (r < 0)
                                _exit(4);
                }
                if (comet_ping(c) < 0)
                        _exit(5);
                pause();
                _exit(0);
        }
        close(up[1]);
        close(down[0]);
        *created = up[0];
        *go = down[1];
        return pid;
}

static void test_reader_keeps_up(void) {
        const uint64_t n = 1000000;
        int created, go;
        char byte;
        pid_t pid = spawn_publisher("keepup.tight", n, 64, &created, &go);
        check(read(created, &byte, 1) == 1, "publisher created its channel (default ring)");
        comet *c = connect_or_die();
        struct reader r = {.next = 1};
        check(comet_subscribe(c, "keepup.tight", COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &r, NULL) == 0, "subscribed");
        check(write(go, "g", 1) == 1, "publisher starts");
        for (int idle = 0; r.count < n && !r.end && idle < 2000;) {
                int rc = comet_wait(c, 10 * 1000);
                if (rc < 0 || comet_process(c) < 0)
                        break;
                idle = rc == 0 ? idle + 1 : 0;
        }
        check(r.count == n && r.bad == 0 && r.next == n + 1, "a reader keeping up got all %llu messages in order (%llu)",
              (unsigned long long)n, (unsigned long long)r.count);
        check(r.end == 0, "and no FULL (end %d at %llu)", (int)r.end, (unsigned long long)r.end_sequence);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        close(created);
        close(go);
        comet_unref(c);
}

static void test_stalled_reader_gets_full(void) {
        comet *producer = connect_or_die(), *c = connect_or_die();
        uint64_t channel;
        check(comet_create(producer, "keepup.stalled", 0, &channel) == 0, "created with the default ring");
        struct reader r = {.next = 1};
        check(comet_subscribe(c, "keepup.stalled", COMET_FROM_NEXT, 0, 0, 0, on_message, on_end, &r, NULL) == 0, "subscribed");
        /* The reader reads nothing while 100,000 messages of 1 KiB go in: more than its queue
         * (1 MiB), its socket and the ring (1000) hold together. */
        const uint64_t n = 100000;
        char payload[1024];
        memset(payload, 's', sizeof payload);
        for (uint64_t i = 0; i < n; i++) {
                int rc;
                while ((rc = comet_push(producer, channel, payload, sizeof payload)) == -EAGAIN)
                        if (comet_wait(producer, UINT64_MAX) < 0 || comet_process(producer) < 0)
                                break;
        }
        check(comet_ping(producer) == 0, "every push is in");
        for (int idle = 0; !r.end && idle < 200;) {
                int rc = comet_wait(c, 10 * 1000);
                if (rc < 0 || comet_process(c) < 0)
                        break;
                idle = rc == 0 ? idle + 1 : 0;
        }
        check(r.end == COMET_END_FULL, "the stalled reader got FULL (end %d)", (int)r.end);
        check(r.count > 1000 && r.bad == 0, "after the %llu messages its queue held, in order", (unsigned long long)r.count);
        check(r.end_sequence == n - 1000 + 1, "first_available is the oldest message the ring holds: %llu",
              (unsigned long long)r.end_sequence);
        comet_unref(c);
        comet_unref(producer);
}

int main(int argc, char **argv) {
        if (argc < 2) {
                fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
                return 2;
        }
        sock = argv[1];
        test_reader_keeps_up();
        test_stalled_reader_gets_full();
        return report("libcomet keep-up");
}
