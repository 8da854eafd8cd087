/* A consumer inside its own poll() loop: waits for the channel, prints each message, and exits
 * when the producer closes it (status 3) or when the reader falls behind (status 2).
 *
 *   cc consumer.c $(pkg-config --cflags --libs comet) -o consumer
 *   ./consumer service.events
 */
#include <comet.h>

#include <poll.h>
#include <stdio.h>

static int status = -1;

static int on_message(comet *c, uint32_t sub, uint64_t seq, const void *data, size_t size, void *userdata) {
        (void)c, (void)sub, (void)userdata;
        printf("%llu\t%.*s\n", (unsigned long long)seq, (int)size, (const char *)data);
        fflush(stdout);
        return 0;
}

static void on_end(comet *c, uint32_t sub, comet_end reason, uint64_t seq, void *userdata) {
        (void)c, (void)sub, (void)userdata;
        if (reason == COMET_END_CLOSED) {
                fprintf(stderr, "closed after %llu\n", (unsigned long long)seq);
                status = 3;
        } else if (reason == COMET_END_FULL) {
                fprintf(stderr, "fell behind; oldest buffered is %llu\n", (unsigned long long)seq);
                status = 2;
        } else {
                status = 74;
        }
}

int main(int argc, char **argv) {
        const char *name = argc > 1 ? argv[1] : "service.events";
        comet *c = NULL;
        int r = comet_connect(&c, NULL);
        if (r < 0) {
                fprintf(stderr, "cannot reach cometd: %s\n", comet_strerror(r));
                return 69;
        }
        r = comet_subscribe(c, name, COMET_FROM_OLDEST, 0, 0, COMET_SUBSCRIBE_WAIT, on_message, on_end, NULL, NULL);
        if (r < 0) {
                fprintf(stderr, "subscribe: %s\n", comet_strerror(r));
                comet_unref(c);
                return 1;
        }
        while (status < 0) {
                /* In a real program this fd joins the others of the application's loop. */
                struct pollfd p = {.fd = comet_get_fd(c), .events = (short)comet_get_events(c)};
                uint64_t deadline;
                comet_get_timeout(c, &deadline);
                if (poll(&p, 1, deadline == UINT64_MAX ? -1 : 0) < 0)
                        break;
                if ((r = comet_process(c)) < 0) {
                        fprintf(stderr, "connection lost: %s\n", comet_strerror(r));
                        status = 74;
                }
        }
        comet_unref(c);
        return status;
}
