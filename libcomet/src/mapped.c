/* libcomet: mapped readers (docs/PROTOCOL.md §6.23): a subscription reads its channel's ring from
 * a read-only mapping of the file the daemon delivers from, told how far to read by RING_ADVANCED. */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Ring file header fields (docs/RESTARTS.md, "Ring file"); native byte order. */
#define RING_MAGIC 0x474e5254454d4f43ull
#define AT_CAPACITY 16
#define AT_DATA_SIZE 24
#define AT_FIRST 104
#define AT_LAST 112
#define RING_HEADER 4096u
/* Position page fields (docs/PROTOCOL.md §6.23, "Position page"). */
#define POSITION_LENGTH 4096u
#define AT_READ 0
#define AT_WANTED 64

static uint64_t field(const uint8_t *base, size_t at) {
        uint64_t v;
        memcpy(&v, base + at, sizeof v);
        return v;
}

void ring_release(struct mapped_ring *ring) {
        if (ring->base)
                munmap(ring->base, ring->length);
        if (ring->position)
                munmap(ring->position, POSITION_LENGTH);
        memset(ring, 0, sizeof *ring);
}

/* RING on a connection of its own: the descriptor `ticket` stands for, mapped read-only. */
static int ring_fetch(comet *c, uint64_t ticket, struct mapped_ring *out) {
        int fd = open_socket(c->path);
        if (fd < 0)
                return fd;
        uint8_t frame[17] = {0, 0, 0, 13, OP_RING, 0, 0, 0, 1};
        for (int i = 0; i < 8; i++)
                frame[9 + i] = (uint8_t)(ticket >> (56 - 8 * i));
        int r = 0, ring_fd = -1, position_fd = -1;
        uint8_t reply[1024];
        size_t got = 0;
        if (send(fd, frame, sizeof frame, MSG_NOSIGNAL) != (ssize_t)sizeof frame) {
                r = -errno;
                goto done;
        }
        /* The answer (and the descriptor with its first byte), within a few seconds. */
        uint64_t deadline = now_usec() + 5000000;
        while (got < 4 || got < 4 + (size_t)be32(reply)) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                uint64_t now = now_usec();
                if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000) + 1) <= 0) {
                        r = -ETIMEDOUT;
                        goto done;
                }
                char control[CMSG_SPACE(2 * sizeof(int))];
                struct iovec v = {.iov_base = reply + got, .iov_len = sizeof reply - got};
                struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
                ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -ECONNRESET;
                        goto done;
                }
                for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
                        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                                continue;
                        size_t fds = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t i = 0; i < fds; i++) {
                                int passed;
                                memcpy(&passed, CMSG_DATA(h) + i * sizeof(int), sizeof passed);
                                if (ring_fd < 0)
                                        ring_fd = passed;
                                else if (position_fd < 0)
                                        position_fd = passed;
                                else
                                        close(passed);
                        }
                }
                got += (size_t)n;
                if (got >= sizeof reply)
                        break;
        }
        if (got < 9) {
                r = -EBADMSG;
                goto done;
        }
        if (reply[4] == OP_ERROR) {
                r = got >= 11 ? -(COMET_E_BASE + ((reply[9] << 8) | reply[10])) : -EBADMSG;
                goto done;
        }
        struct stat info;
        if (reply[4] != OP_OK || got < 17 || ring_fd < 0 || fstat(ring_fd, &info) < 0) {
                r = -EBADMSG;
                goto done;
        }
        size_t length = (size_t)info.st_size;
        void *base = length >= 2 * RING_HEADER ? mmap(NULL, length, PROT_READ, MAP_SHARED, ring_fd, 0) : MAP_FAILED;
        if (base == MAP_FAILED) {
                r = length >= 2 * RING_HEADER ? -errno : -EBADMSG;
                goto done;
        }
        /* Nothing in the file is trusted before it is checked. */
        uint64_t capacity = field(base, AT_CAPACITY), size = field(base, AT_DATA_SIZE);
        uint64_t data = RING_HEADER + ((capacity * 16 + 4095) & ~(uint64_t)4095);
        if (field(base, 0) != RING_MAGIC || capacity == 0 || capacity > (1u << 26) || size < 4096 || (size & (size - 1)) ||
            data + size != length) {
                munmap(base, length);
                r = -EBADMSG;
                goto done;
        }
        /* A protected reader's position page: the answer says its size after the ring's. */
        uint8_t *position = NULL;
        uint64_t position_length = got >= 25 ? be64(reply + 17) : 0;
        if (position_length) {
                if (position_fd < 0 || position_length != POSITION_LENGTH ||
                    fstat(position_fd, &info) < 0 || (uint64_t)info.st_size < POSITION_LENGTH ||
                    (position = mmap(NULL, POSITION_LENGTH, PROT_READ | PROT_WRITE, MAP_SHARED, position_fd, 0)) == MAP_FAILED) {
                        munmap(base, length);
                        r = -EBADMSG;
                        goto done;
                }
        }
        *out = (struct mapped_ring){.base = base, .length = length, .capacity = capacity, .size = size, .data = data, .position = position};
done:
        if (position_fd >= 0)
                close(position_fd);
        if (ring_fd >= 0)
                close(ring_fd);
        close(fd);
        return r;
}

/* Copies message `seq` into `c->ring_copy`: 1 with its length; 0 with `*first` set when the
 * reader was overtaken (the copy could be torn); 2 when this file does not hold it (the ring moved
 * to another file, whose ticket is on its way). */
static int ring_read(comet *c, const struct mapped_ring *ring, uint64_t seq, size_t *length, uint64_t *first) {
        const uint8_t *base = ring->base;
        if (seq > __atomic_load_n((const uint64_t *)(base + AT_LAST), __ATOMIC_ACQUIRE))
                return 2;
        uint64_t oldest = __atomic_load_n((const uint64_t *)(base + AT_FIRST), __ATOMIC_ACQUIRE);
        if (seq < oldest) {
                *first = oldest;
                return 0;
        }
        const uint8_t *entry = base + RING_HEADER + ((seq - 1) % ring->capacity) * 16;
        uint64_t offset;
        uint32_t len;
        memcpy(&offset, entry, sizeof offset);
        memcpy(&len, entry + 8, sizeof len);
        uint64_t at = offset & (ring->size - 1);
        int whole = at + len <= ring->size;
        if (whole) {
                if (len > c->ring_copy_capacity) {
                        uint8_t *bigger = realloc(c->ring_copy, len);
                        if (!bigger)
                                return -ENOMEM;
                        c->ring_copy = bigger;
                        c->ring_copy_capacity = len;
                }
                memcpy(c->ring_copy, base + ring->data + at, len);
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        oldest = __atomic_load_n((const uint64_t *)(base + AT_FIRST), __ATOMIC_ACQUIRE);
        if (seq < oldest || !whole) {
                *first = oldest > seq ? oldest : seq + 1;
                return 0;
        }
        *length = len;
        return 1;
}

/* Whether a failed RING (`error`) means the daemon is gone: its connection was closed or refused,
 * and this connection is hung up too (waiting a moment for that, as both close together). */
static int daemon_gone(comet *c, int error) {
        if (error != -ECONNRESET && error != -ECONNREFUSED && error != -ENOENT && error != -EPIPE)
                return 0;
        struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
        return poll(&p, 1, 200) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Stores in the position page that everything before `next` was read; a producer waiting for
 * that also wants an ACK (the fence pairs with the daemon's between asking and looking again),
 * which queue_acks then sends. */
static void say_read(struct subscription *s, uint64_t next) {
        __atomic_store_n((uint64_t *)(s->ring.position + AT_READ), next, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n((const uint64_t *)(s->ring.position + AT_WANTED), __ATOMIC_ACQUIRE) && next - 1 > s->acked)
                s->acked = next - 1;
}

/* RING_ADVANCED: hands the subscription's handler every message up to `last`, from the mapping.
 * Flags: bit 0, then say how far it read (ACK, sent with the next acknowledgements); bit 1, the
 * reader is held: overtaken in the ring, it waits for the daemon's RING_DETACHED (or FULL). */
int ring_advanced(comet *c, uint32_t server_sub, uint64_t last, uint64_t ticket, uint8_t flags) {
        int report = flags & 1, held = (flags & 2) != 0, newest = (flags & 4) != 0;
        struct subscription *s = find_sub(c, server_sub);
        if (!s)
                return 0;
        uint32_t id = s->id;
        if (ticket) {
                struct mapped_ring ring;
                int r = ring_fetch(c, ticket, &ring);
                if (r == -COMET_E_BAD_TOKEN) {
                        /* The ring moved again since: the newer ticket follows. Read what this file holds. */
                        ticket = 0;
                } else if (r < 0 && daemon_gone(c, r)) {
                        /* The daemon went away (a crash, a restart): this connection's end follows,
                         * and with it the reconnection, which subscribes again. */
                        return 0;
                } else if (r < 0) {
                        /* The subscription cannot be read: it ends, saying why. */
                        end_subscription(c, server_sub, COMET_END_FAILED, (uint64_t)-r);
                        return 0;
                }
                if (ticket) {
                        ring_release(&s->ring);
                        s->ring = ring;
                }
        }
        while ((s = find_local(c, id)) && s->ring.base && s->last < last) {
                uint64_t seq = s->last + 1, first = 0;
                size_t length = 0;
                int r = ring_read(c, &s->ring, seq, &length, &first);
                if (r < 0)
                        return r;
                if (r == 2)
                        return 0;
                if (r == 0 && newest) {
                        /* A newest channel moved on: its latest value is what there is to read. */
                        s->last = first - 1;
                        continue;
                }
                if (r == 0 && held)
                        return 0; /* the daemon detached it: the rest comes over the socket */
                if (r == 0) {
                        /* Overtaken: FULL, as a socket reader would get it; the daemon forgets it too. */
                        comet_end_handler on_end = s->on_end;
                        void *userdata = s->userdata;
                        if (comet_unsubscribe_async(c, id, NULL, NULL) < 0)
                                remove_sub(c, id);
                        if (on_end)
                                on_end(c, id, COMET_END_FULL, first, userdata);
                        return 0;
                }
                s->last = seq;
                s->on_message(c, id, seq, c->ring_copy, length, s->userdata);
        }
        if (!(s = find_local(c, id)) || !s->ring.base)
                return 0;
        if (s->ring.position)
                say_read(s, s->last + 1);
        if (report && s->last >= last && s->last > s->acked)
                s->acked = s->last;
        return 0;
}

COMET_PUBLIC int comet_subscription_is_mapped(comet *c, uint32_t subscription) {
        if (!c)
                return -EINVAL;
        struct subscription *s = find_local(c, subscription);
        if (!s)
                return -COMET_E_NO_SUCH_SUBSCRIPTION;
        return s->ring.base != NULL;
}
