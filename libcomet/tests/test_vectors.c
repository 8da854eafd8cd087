/* The C codec against the hex vectors of docs/PROTOCOL.md, which the Swift codec tests read too.
 *
 * A fake daemon (a thread on a socketpair-like Unix socket) expects each request libcomet sends to
 * be the documented bytes (request ids aside: they are renumbered), and answers with the
 * documented server frames; the test checks what libcomet made of them.
 *
 * Usage: test_vectors PATH/TO/PROTOCOL.md */
#include "comet.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct vector {
        char name[64];
        uint8_t bytes[512];
        size_t size;
};

static struct vector vectors[64];
static size_t vector_count;

static int hexval(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        return -1;
}

static void load_vectors(const char *path) {
        FILE *f = fopen(path, "r");
        if (!f) {
                perror(path);
                exit(2);
        }
        char line[2048];
        struct vector *current = NULL;
        int high = -1;
        while (fgets(line, sizeof line, f)) {
                if (strncmp(line, "```hex vector=", 14) == 0) {
                        current = &vectors[vector_count++];
                        memset(current, 0, sizeof *current);
                        strncpy(current->name, line + 14, sizeof current->name - 1);
                        current->name[strcspn(current->name, "\r\n")] = 0;
                        high = -1;
                } else if (strncmp(line, "```", 3) == 0) {
                        current = NULL;
                } else if (current) {
                        for (char *p = line; *p; p++) {
                                int v = hexval(*p);
                                if (v < 0)
                                        continue;
                                if (high < 0) {
                                        high = v;
                                } else {
                                        current->bytes[current->size++] = (uint8_t)(high << 4 | v);
                                        high = -1;
                                }
                        }
                }
        }
        fclose(f);
}

static const struct vector *vector(const char *name) {
        for (size_t i = 0; i < vector_count; i++)
                if (strcmp(vectors[i].name, name) == 0)
                        return &vectors[i];
        fprintf(stderr, "no vector %s in PROTOCOL.md\n", name);
        exit(2);
}

/* ---- The fake daemon ------------------------------------------------------------------------ */

static int server_fd = -1;
static uint32_t last_request_id;

static void read_exact(int fd, uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t r = read(fd, p, n);
                if (r <= 0) {
                        fprintf(stderr, "fake daemon: read failed\n");
                        exit(2);
                }
                p += r;
                n -= (size_t)r;
        }
}

/* Reads one frame and checks it is vector `name` apart from its request id. */
static void expect_request(const char *name) {
        const struct vector *v = vector(name);
        uint8_t frame[512];
        read_exact(server_fd, frame, 4);
        size_t length = (size_t)frame[0] << 24 | (size_t)frame[1] << 16 | (size_t)frame[2] << 8 | frame[3];
        if (length + 4 > sizeof frame) {
                fprintf(stderr, "frame too long\n");
                exit(2);
        }
        read_exact(server_fd, frame + 4, length);
        last_request_id = (uint32_t)frame[5] << 24 | (uint32_t)frame[6] << 16 | (uint32_t)frame[7] << 8 | frame[8];
        int same = length + 4 == v->size && memcmp(frame, v->bytes, 5) == 0 && memcmp(frame + 9, v->bytes + 9, v->size - 9) == 0;
        check(same, "request bytes match vector %s", name);
}

/* Sends vector `name`, with its request id (if it has one) replaced by the last request's. */
static void send_vector(const char *name) {
        const struct vector *v = vector(name);
        uint8_t frame[512];
        memcpy(frame, v->bytes, v->size);
        if (frame[4] == 0x80 || frame[4] == 0x81) {
                frame[5] = (uint8_t)(last_request_id >> 24);
                frame[6] = (uint8_t)(last_request_id >> 16);
                frame[7] = (uint8_t)(last_request_id >> 8);
                frame[8] = (uint8_t)last_request_id;
        }
        if (write(server_fd, frame, v->size) != (ssize_t)v->size)
                exit(2);
}

static void send_raw(const uint8_t *bytes, size_t size) {
        if (write(server_fd, bytes, size) != (ssize_t)size)
                exit(2);
}

/* Reads one frame without checking it (a request no vector describes). */
static void skip_request(void) {
        uint8_t frame[512];
        read_exact(server_fd, frame, 4);
        size_t length = (size_t)frame[0] << 24 | (size_t)frame[1] << 16 | (size_t)frame[2] << 8 | frame[3];
        read_exact(server_fd, frame + 4, length);
        last_request_id = (uint32_t)frame[5] << 24 | (uint32_t)frame[6] << 16 | (uint32_t)frame[7] << 8 | frame[8];
}

static const char *socket_path;

/* ---- Client side ---------------------------------------------------------------------------- */

static uint64_t message_sequence;
static char message_text[64];
static comet_end end_reason;
static uint64_t end_sequence;
static char offered[64];
static int offered_kind;
static int error_seen;
static uint64_t pulled_channel, pulled;

static int on_message(comet *c, uint32_t sub, uint64_t seq, const void *data, size_t size, void *userdata) {
        (void)c, (void)sub, (void)userdata;
        message_sequence = seq;
        snprintf(message_text, sizeof message_text, "%.*s", (int)size, (const char *)data);
        return 0;
}

static void on_end(comet *c, uint32_t sub, comet_end reason, uint64_t seq, void *userdata) {
        (void)c, (void)sub, (void)userdata;
        end_reason = reason;
        end_sequence = seq;
}

static void on_offer(comet *c, uint64_t channel, const char *name, int kind, void *userdata) {
        (void)c, (void)channel, (void)userdata;
        snprintf(offered, sizeof offered, "%s", name);
        offered_kind = kind;
}

static void on_error(comet *c, uint64_t channel, int error, void *userdata) {
        (void)c, (void)channel, (void)userdata;
        error_seen = error;
}

static void on_pull(comet *c, uint64_t channel, uint64_t pull, void *userdata) {
        (void)userdata;
        pulled_channel = channel;
        pulled = pull;
        comet_answer(c, channel, pull, "hi", 2);
}

static void process_until(comet *c, int *flag) {
        for (int i = 0; i < 200 && !*flag; i++) {
                comet_wait(c, 50000);
                comet_process(c);
        }
}

/* The client runs in a thread; the fake daemon in main drives the script. */
struct client_run {
        comet *c;
};

static void *client_script(void *arg) {
        struct client_run *run = arg;
        comet *c = NULL;
        int r = comet_connect(&c, socket_path);
        check(r == 0, "connect decodes hello-ok (%s)", comet_strerror(r));
        if (r < 0)
                return NULL;
        comet_session s;
        comet_get_session(c, &s);
        check(s.id == 0xabc && s.token[0] == 1 && s.token[15] == 0x10, "session id and token from hello-ok");
        comet_set_offer_handler(c, on_offer, NULL);
        comet_set_error_handler(c, on_error, NULL);

        uint64_t channel = 0, seq = 0;
        check(comet_create(c, "news", 1000, &channel) == 0 && channel == 1, "create-ok gives channel 1");
        check(comet_push_sync(c, 1, "hi", 2, &seq) == 0 && seq == 1, "push-ok gives sequence 1");
        check(comet_close_channel(c, 1) == 0, "close-ok");

        uint32_t sub = 0;
        r = comet_subscribe(c, "news", COMET_FROM_SEQUENCE, 2, UINT64_C(0x1122334455667788), COMET_SUBSCRIBE_WAIT, on_message,
                            on_end, NULL, &sub);
        check(r == 0 && sub == 1, "subscribe-ok gives subscription 1");
        int got_end = 0;
        while (!end_reason && comet_wait(c, 2000000) > 0 && comet_process(c) >= 0)
                got_end = end_reason != 0;
        check(message_sequence == 2 && strcmp(message_text, "bc") == 0, "message vector decoded: seq 2, \"bc\"");
        check(end_reason == COMET_END_CLOSED && end_sequence == 3, "closed vector decoded: last 3");
        (void)got_end;

        check(comet_create_private(c, "mail", 0xabc, 100, &channel) == 0 && channel == UINT64_C(0x8000000000000001),
              "create-private-ok gives the private handle");
        r = comet_subscribe_private(c, "mail", on_message, on_end, NULL, &sub);
        check(r == 0 && sub == 3, "private subscription 3");
        int acked = 0;
        while (message_sequence != 7 && comet_wait(c, 2000000) > 0 && comet_process(c) >= 0)
                ;
        comet_flush(c);
        acked = 1;
        (void)acked;

        int ended = -1;
        check(comet_wait_timeout(c, 0xabc, 1000, &ended) == 0 && ended == 0, "wait-timeout-ok: inactive");

        process_until(c, &offered_kind);
        check(strcmp(offered, "mail") == 0 && offered_kind == 2, "offer vector decoded");

        uint64_t unlimited = 0;
        check(comet_create_unlimited(c, "mail2", 0xabc, on_pull, NULL, &unlimited) == 0 &&
                      unlimited == UINT64_C(0x8000000000000002),
              "unlimited channel created");
        int pulled_flag = 0;
        while (!pulled_flag && comet_wait(c, 2000000) > 0 && comet_process(c) >= 0)
                pulled_flag = pulled != 0;
        check(pulled_channel == unlimited && pulled == 1, "pull vector decoded");
        comet_flush(c);

        process_until(c, &error_seen);
        check(error_seen == -COMET_E_SESSION_ENDED, "ended vector decoded: SESSION_ENDED");

        end_reason = 0;
        r = comet_external_channel(c, "unix:/run/comet/comet.sock", "news", 3, 0, on_message, on_end, NULL, &sub);
        check(r == 0 && sub == 1, "subscribe-external answered");
        while (!end_reason && comet_wait(c, 2000000) > 0 && comet_process(c) >= 0)
                ;
        check(end_reason == COMET_END_RESET && end_sequence == UINT64_C(0x2233445566778899), "reset vector decoded: new epoch");

        r = comet_push_sync(c, 1, "hi", 2, NULL);
        check(r == -COMET_E_NOT_OWNER && strcmp(comet_last_error_message(c), "not yours") == 0,
              "error vector decoded: NOT_OWNER, \"not yours\"");
        run->c = comet_unref(c);

        comet_session resume = {.id = 0xabc, .token = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};
        r = comet_connect_resume(&c, socket_path, &resume);
        check(r == 0, "connect_resume sends hello then resume");
        comet_unref(c);
        return NULL;
}

int main(int argc, char **argv) {
        if (argc < 2) {
                fprintf(stderr, "usage: %s PROTOCOL.md\n", argv[0]);
                return 2;
        }
        load_vectors(argv[1]);
        check(vector_count >= 30, "PROTOCOL.md holds the vectors (%zu)", vector_count);

        char path[] = "/tmp/comet-vectors-XXXXXX";
        if (!mkdtemp(path))
                return 2;
        char sock[128];
        snprintf(sock, sizeof sock, "%s/fake.sock", path);
        socket_path = sock;
        int listener = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un address = {.sun_family = AF_UNIX};
        strcpy(address.sun_path, sock);
        if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 4) < 0)
                return 2;

        struct client_run run = {0};
        pthread_t client;
        pthread_create(&client, NULL, client_script, &run);

        server_fd = accept(listener, NULL, NULL);
        expect_request("hello");
        send_vector("hello-ok");
        expect_request("create");
        send_vector("create-ok");
        expect_request("push");
        send_vector("push-ok");
        expect_request("close");
        send_vector("close-ok");
        expect_request("subscribe");
        send_vector("subscribe-ok");
        send_vector("message");
        send_vector("closed");
        expect_request("create-private");
        send_vector("create-private-ok");
        expect_request("subscribe-private");
        /* subscribe-ok for subscription 3, then message 7 of it: the acknowledgement must be vector "ack". */
        {
                uint8_t ok[] = {0, 0, 0, 0x1a, 0x80, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x01, 0x02,
                                0, 0, 0, 0, 0, 0, 0, 7};
                ok[5] = (uint8_t)(last_request_id >> 24), ok[6] = (uint8_t)(last_request_id >> 16);
                ok[7] = (uint8_t)(last_request_id >> 8), ok[8] = (uint8_t)last_request_id;
                send_raw(ok, sizeof ok);
                uint8_t msg[] = {0, 0, 0, 0x0f, 0x90, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 7, 'h', 'i'};
                send_raw(msg, sizeof msg);
        }
        expect_request("ack");
        send_vector("ack-ok");
        expect_request("wait-timeout");
        send_vector("wait-timeout-ok");
        send_vector("offer");
        skip_request(); /* CREATE_PRIVATE kind 3 "mail2": no vector; answer with handle ...02 */
        {
                uint8_t ok[] = {0, 0, 0, 0x15, 0x80, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8};
                ok[5] = (uint8_t)(last_request_id >> 24), ok[6] = (uint8_t)(last_request_id >> 16);
                ok[7] = (uint8_t)(last_request_id >> 8), ok[8] = (uint8_t)last_request_id;
                send_raw(ok, sizeof ok);
        }
        send_vector("pull");
        expect_request("answer");
        send_vector("ended");
        expect_request("subscribe-external");
        send_vector("subscribe-ok");
        send_vector("reset");
        expect_request("push");
        send_vector("error");
        close(server_fd);

        server_fd = accept(listener, NULL, NULL);
        expect_request("hello");
        send_vector("hello-ok");
        expect_request("resume");
        send_vector("resume-ok");
        pthread_join(client, NULL);
        close(server_fd);
        close(listener);
        unlink(sock);
        rmdir(path);
        return report("libcomet vectors");
}
