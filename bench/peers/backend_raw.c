/* The floor: a raw AF_UNIX relay that write()s each message to each subscriber, one system call
 * per message per reader, and clients that write and read fixed-size messages. */
#include "backend.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int connect_unix(const char *path, char role) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, path, sizeof a.sun_path - 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char ack;
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0 || write(fd, &role, 1) != 1 || read(fd, &ack, 1) != 1) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

static int write_all(int fd, const void *data, size_t size) {
        const uint8_t *p = data;
        while (size > 0) {
                ssize_t n = write(fd, p, size);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                p += n;
                size -= (size_t)n;
        }
        return 0;
}

struct pub {
        int fd;
};

struct sub {
        int fd;
        uint8_t buffer[65536];
        size_t have;
};

static struct pub *pub_open(const char *address, const char *topic, int low_latency) {
        (void)topic, (void)low_latency;
        int fd = connect_unix(address, 'P');
        if (fd < 0)
                return NULL;
        struct pub *p = calloc(1, sizeof *p);
        p->fd = fd;
        return p;
}

static int pub_ready(struct pub *p, int subscribers) {
        (void)p, (void)subscribers;
        return 0;
}

static int publish(struct pub *p, const void *data, size_t size) { return write_all(p->fd, data, size); }

static int pub_nothing(struct pub *p) {
        (void)p;
        return 0;
}

static void pub_close(struct pub *p) {
        close(p->fd);
        free(p);
}

static struct sub *sub_open(const char *address, const char *topic) {
        (void)topic;
        int fd = connect_unix(address, 'S');
        if (fd < 0)
                return NULL;
        struct sub *s = calloc(1, sizeof *s);
        s->fd = fd;
        return s;
}

static int sub_next(struct sub *s, int timeout_ms, message_fn fn, void *ctx) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
                return 0;
        ssize_t n = read(s->fd, s->buffer + s->have, sizeof s->buffer - s->have);
        if (n <= 0)
                return -1;
        s->have += (size_t)n;
        size_t at = 0;
        int count = 0;
        for (; s->have - at >= MESSAGE_SIZE; at += MESSAGE_SIZE, count++)
                fn(ctx, s->buffer + at, MESSAGE_SIZE);
        memmove(s->buffer, s->buffer + at, s->have - at);
        s->have -= at;
        return count;
}

static void sub_close(struct sub *s) {
        close(s->fd);
        free(s);
}

const struct backend raw_backend = {"raw", pub_open, pub_ready, publish, pub_nothing, pub_nothing, pub_close,
                                    sub_open, sub_next, sub_close};

/* The relay: accepts publishers ('P') and subscribers ('S'); every message a publisher sends is
 * written to every subscriber with a write() of its own. Blocking writes: a stalled subscriber
 * stalls everyone (there is no queue to lose messages from). */
int raw_relay_main(const char *path) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strncpy(a.sun_path, path, sizeof a.sun_path - 1);
        unlink(path);
        int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) < 0 || listen(listener, 4096) < 0)
                return 1;
        enum { MAX = 4096 };
        struct pollfd fds[MAX];
        char role[MAX];
        static uint8_t partial[MAX][MESSAGE_SIZE];
        size_t partial_len[MAX];
        int subscribers[MAX], nsubs = 0, n = 1;
        fds[0] = (struct pollfd){.fd = listener, .events = POLLIN};
        for (;;) {
                if (poll(fds, (nfds_t)n, -1) < 0 && errno != EINTR)
                        return 1;
                if ((fds[0].revents & POLLIN) && n < MAX) {
                        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
                        char r = 0;
                        if (fd >= 0 && read(fd, &r, 1) == 1 && write(fd, "K", 1) == 1) {
                                fds[n] = (struct pollfd){.fd = fd, .events = POLLIN};
                                role[n] = r;
                                partial_len[n] = 0;
                                if (r == 'S')
                                        subscribers[nsubs++] = fd;
                                n++;
                        } else if (fd >= 0) {
                                close(fd);
                        }
                }
                for (int i = 1; i < n; i++) {
                        if (!(fds[i].revents & (POLLIN | POLLHUP)))
                                continue;
                        uint8_t buffer[65536];
                        ssize_t got = read(fds[i].fd, buffer, sizeof buffer);
                        if (got <= 0) {
                                for (int k = 0; k < nsubs; k++)
                                        if (subscribers[k] == fds[i].fd)
                                                subscribers[k--] = subscribers[--nsubs];
                                close(fds[i].fd);
                                fds[i] = fds[n - 1];
                                role[i] = role[n - 1];
                                memcpy(partial[i], partial[n - 1], MESSAGE_SIZE);
                                partial_len[i] = partial_len[n - 1];
                                n--;
                                i--;
                                continue;
                        }
                        if (role[i] != 'P')
                                continue;
                        for (ssize_t at = 0; at < got;) {
                                size_t take = MESSAGE_SIZE - partial_len[i];
                                if ((size_t)(got - at) < take)
                                        take = (size_t)(got - at);
                                memcpy(partial[i] + partial_len[i], buffer + at, take);
                                partial_len[i] += take;
                                at += (ssize_t)take;
                                if (partial_len[i] < MESSAGE_SIZE)
                                        break;
                                partial_len[i] = 0;
                                for (int k = 0; k < nsubs; k++)
                                        write_all(subscribers[k], partial[i], MESSAGE_SIZE);
                        }
                }
        }
}
