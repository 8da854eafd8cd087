/* A private-channel exchange between two processes: the parent is the consumer (a client
 * process with a session), the child the producer that addresses a private channel to it.
 *
 *   cc private_exchange.c $(pkg-config --cflags --libs comet) -o private_exchange
 *   ./private_exchange
 */
#include <comet.h>

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int received;

static int on_message(comet *c, uint32_t sub, uint64_t seq, const void *data, size_t size, void *userdata) {
        (void)c, (void)sub, (void)userdata;
        printf("consumer got %llu: %.*s\n", (unsigned long long)seq, (int)size, (const char *)data);
        fflush(stdout);
        received++;
        return 0; /* acknowledged: the daemon may forget it */
}

static void on_end(comet *c, uint32_t sub, comet_end reason, uint64_t seq, void *userdata) {
        (void)c, (void)sub, (void)seq, (void)userdata;
        printf("consumer: channel %s\n", reason == COMET_END_CLOSED ? "closed" : "ended");
        received = -1;
}

static int subscribed;
static void on_offer(comet *c, uint64_t channel, const char *name, int kind, void *userdata) {
        (void)channel, (void)kind, (void)userdata;
        printf("consumer: offered '%s'\n", name);
        if (comet_subscribe_private(c, name, on_message, on_end, NULL, NULL) == 0)
                subscribed = 1;
}

static int producer(uint64_t session) {
        comet *c = NULL;
        uint64_t channel;
        if (comet_connect(&c, NULL) < 0 || comet_create_private(c, "inbox", session, 10, &channel) < 0)
                return 1;
        const char *notes[] = {"you have mail", "meeting at 10", "build passed"};
        for (int i = 0; i < 3; i++)
                comet_push_sync(c, channel, notes[i], strlen(notes[i]), NULL);
        comet_close_channel(c, channel);
        comet_unref(c);
        return 0;
}

int main(void) {
        comet *c = NULL;
        int r = comet_connect(&c, NULL);
        if (r < 0) {
                fprintf(stderr, "cannot reach cometd: %s\n", comet_strerror(r));
                return 69;
        }
        comet_session session;
        comet_get_session(c, &session);
        comet_set_offer_handler(c, on_offer, NULL);
        pid_t child = fork();
        if (child == 0)
                _exit(producer(session.id));
        while (received >= 0) {
                if (comet_wait(c, 5 * 1000 * 1000) <= 0 || comet_process(c) < 0)
                        break;
        }
        int st = 0;
        waitpid(child, &st, 0);
        comet_unref(c);
        return received == -1 && subscribed && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
