/* The C producer of scripts/systemd-faults: pushes each line of standard input to a new channel
 * with libcomet's reconnection on, pipelined (comet_push coalesces them into numbered batches),
 * and exits 0 once the daemon has answered the last one; 1 on any refusal or give-up.
 *
 *   line_producer CHANNEL SIZE < lines
 */
#include <comet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int refused;
static int last_done;

static void on_error(comet *c, uint64_t channel, int error, void *userdata) {
        (void)c, (void)channel, (void)userdata;
        fprintf(stderr, "line_producer: push refused: %s\n", comet_strerror(error));
        refused = 1;
}

static void on_last(comet *c, int result, uint64_t sequence, void *userdata) {
        (void)c, (void)userdata;
        if (result < 0) {
                fprintf(stderr, "line_producer: last push failed: %s\n", comet_strerror(result));
                refused = 1;
        } else {
                fprintf(stderr, "line_producer: last line is message %llu\n", (unsigned long long)sequence);
        }
        last_done = 1;
}

/* Reads answers (and writes what is queued) without waiting; < 0 once the client gave up. */
static int pump(comet *c) {
        int r = comet_process(c);
        return r == 2 ? 0 : r;
}

int main(int argc, char **argv) {
        if (argc < 3) {
                fprintf(stderr, "usage: line_producer CHANNEL SIZE < lines\n");
                return 2;
        }
        comet *c = NULL;
        uint64_t channel;
        int r = comet_connect(&c, NULL);
        if (r < 0 || (r = comet_set_reconnect(c, 1)) < 0 || (r = comet_create(c, argv[1], (uint32_t)atoi(argv[2]), &channel)) < 0) {
                fprintf(stderr, "line_producer: %s\n", comet_strerror(r));
                return 1;
        }
        comet_set_error_handler(c, on_error, NULL);
        char *line = NULL, *next = NULL;
        size_t cap = 0, next_cap = 0;
        ssize_t len = getline(&line, &cap, stdin);
        while (len >= 0 && !refused) {
                if (len > 0 && line[len - 1] == '\n')
                        line[--len] = 0;
                ssize_t next_len = getline(&next, &next_cap, stdin);
                if (next_len < 0) {
                        /* The last line: its answer means every one before it was answered. */
                        r = comet_push_async(c, channel, line, (size_t)len, on_last, NULL);
                } else {
                        while ((r = comet_push(c, channel, line, (size_t)len)) == -EAGAIN) {
                                comet_wait(c, 100000);
                                if ((r = pump(c)) < 0)
                                        break;
                        }
                }
                if (r < 0 || (r = pump(c)) < 0) {
                        fprintf(stderr, "line_producer: %s\n", comet_strerror(r));
                        return 1;
                }
                char *t = line;
                line = next, next = t;
                size_t tc = cap;
                cap = next_cap, next_cap = tc;
                len = next_len;
        }
        while (!last_done && !refused) {
                /* comet_process() notices a lost connection and reconnects (the pushes are sent
                 * again); it fails only once the client gives up. */
                comet_wait(c, 100000);
                if ((r = pump(c)) < 0) {
                        fprintf(stderr, "line_producer: %s\n", comet_strerror(r));
                        return 1;
                }
        }
        free(line);
        free(next);
        comet_unref(c);
        return refused;
}
