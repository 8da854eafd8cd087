/* A service that publishes its notifications on a site channel.
 *
 *   cc producer.c $(pkg-config --cflags --libs comet) -o producer
 *   ./producer service.events 5        # pushes 5 notifications, then closes the channel
 */
#include <comet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
        const char *name = argc > 1 ? argv[1] : "service.events";
        int count = argc > 2 ? atoi(argv[2]) : 5;
        comet *c = NULL;
        uint64_t channel;
        int r = comet_connect(&c, NULL);
        if (r < 0) {
                fprintf(stderr, "cannot reach cometd: %s\n", comet_strerror(r));
                return 69;
        }
        r = comet_create(c, name, 100, &channel);
        if (r < 0) {
                fprintf(stderr, "cannot create %s: %s (%s)\n", name, comet_strerror(r), comet_last_error_message(c));
                comet_unref(c);
                return 1;
        }
        for (int i = 1; i <= count; i++) {
                char text[64];
                uint64_t seq;
                snprintf(text, sizeof text, "service event %d", i);
                if ((r = comet_push_sync(c, channel, text, strlen(text), &seq)) < 0) {
                        fprintf(stderr, "push: %s\n", comet_strerror(r));
                        break;
                }
                printf("pushed %llu: %s\n", (unsigned long long)seq, text);
                fflush(stdout);
                usleep(100 * 1000);
        }
        comet_close_channel(c, channel);
        comet_unref(c);
        return r < 0 ? 1 : 0;
}
