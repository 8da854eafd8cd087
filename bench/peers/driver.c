/* The side-by-side driver (make bench-peers): runs the same workloads against one system through
 * its backend and prints one RESULT line per figure, for bench/peers/table.py to put side by side.
 *   driver SYSTEM ADDRESS SERVER_PID     SYSTEM: comet, redis, zeromq, nats, dbus, raw (SERVER_PID 0: none)
 *   driver relay PATH                    the raw relay server
 *   driver SYSTEM ADDRESS 0 produce TOPIC COUNT   only a publisher (bench/python's feed)
 * Workloads (64-byte messages, each subscriber on a connection and a thread of its own):
 *   W1 1 -> 1 and W2 1 -> 10, 1 -> 100: delivered messages per second summed over subscribers, lost
 *      messages and ended subscriptions counted; median of 3 runs;
 *   W3 one-way latency of 1 -> 1 at 10,000 messages per second for 5 s;
 *   W4 the server's RSS growth per idle subscriber connection (1000 of them);
 *   probe: one of 3 subscribers stalls for 3 s while 500,000 messages are sent. */
#include "backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const struct backend *b;
static const char *address;
static int server_pid;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get64(const uint8_t *p) {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
}

/* ---- Readers -------------------------------------------------------------------------------- */

struct reader {
        pthread_t thread;
        struct sub *sub;
        uint64_t total;      /* messages it should get */
        uint64_t received, next, gaps;
        uint64_t first_ns, last_ns;
        int ended;           /* FULL, disconnected */
        int stall_ms;        /* the probe's stalled reader */
        uint64_t *latencies; /* W3: one-way latency of each message, ns */
        size_t latency_count, latency_capacity;
};

static atomic_int publisher_done;
static atomic_uint_fast64_t publisher_done_ns;
static atomic_uint_fast64_t publish_start_ns;

/* The clock is read per message only for latency (W3); throughput runs read it once per
 * delivery call (reader_main): at tens of millions of messages per second a read per message
 * would be most of the driver's own CPU, and the same for every system. */
static void on_message(void *ctx, const uint8_t *data, size_t size) {
        struct reader *r = ctx;
        if (size < 16)
                return;
        uint64_t seq = get64(data);
        if (seq != r->next)
                r->gaps++;
        r->next = seq + 1;
        r->received++;
        if (r->latencies && r->latency_count < r->latency_capacity)
                r->latencies[r->latency_count++] = now_ns() - get64(data + 8);
}

static void *reader_main(void *arg) {
        struct reader *r = arg;
        if (r->stall_ms) {
                while (!atomic_load(&publish_start_ns))
                        usleep(1000);
                usleep((useconds_t)r->stall_ms * 1000);
        }
        while (r->received < r->total) {
                uint64_t before = r->received;
                int n = b->sub_next(r->sub, 100, on_message, r);
                if (r->received > before) {
                        uint64_t t = now_ns();
                        if (before == 0)
                                r->first_ns = t;
                        r->last_ns = t;
                }
                if (n < 0) {
                        r->ended = 1;
                        break;
                }
                /* Everything sent and nothing more for 2 s: the rest is lost. */
                if (n == 0 && atomic_load(&publisher_done) && now_ns() - atomic_load(&publisher_done_ns) > 2000000000u)
                        break;
        }
        return NULL;
}

static int run_id;

static void topic_name(char *out, size_t size, const char *workload) {
        snprintf(out, size, "peers.%s.%d.%d", workload, (int)getpid(), run_id++);
}

/* ---- Throughput ----------------------------------------------------------------------------- */

struct outcome {
        double rate;          /* delivered msgs/s over all readers */
        uint64_t lost;        /* messages some reader did not get */
        int ended;            /* readers whose subscription ended early */
        double max_publish_ms; /* longest single publish call */
        double publish_s;     /* time to send everything */
        uint64_t stalled_received;
        int stalled_ended;
        double others_rate;   /* per non-stalled reader */
};

static int open_readers(struct reader *readers, int n, const char *topic, uint64_t total) {
        for (int i = 0; i < n; i++) {
                memset(&readers[i], 0, sizeof readers[i]);
                readers[i].total = total;
                if (!(readers[i].sub = b->sub_open(address, topic)))
                        return -1;
        }
        return 0;
}

static struct outcome throughput(const char *workload, int subscribers, uint64_t total, int stall_ms) {
        struct outcome o = {0};
        char topic[128];
        topic_name(topic, sizeof topic, workload);
        struct pub *p = b->pub_open(address, topic, 0);
        struct reader *readers = calloc((size_t)subscribers, sizeof *readers);
        if (!p || open_readers(readers, subscribers, topic, total) < 0 || b->pub_ready(p, subscribers) < 0) {
                fprintf(stderr, "%s: cannot set up %s\n", b->name, workload);
                exit(1);
        }
        atomic_store(&publisher_done, 0);
        atomic_store(&publish_start_ns, 0);
        if (stall_ms)
                readers[0].stall_ms = stall_ms;
        for (int i = 0; i < subscribers; i++)
                pthread_create(&readers[i].thread, NULL, reader_main, &readers[i]);
        uint8_t message[MESSAGE_SIZE];
        memset(message, 'm', sizeof message);
        uint64_t start = now_ns(), worst = 0;
        atomic_store(&publish_start_ns, start);
        for (uint64_t i = 0; i < total; i++) {
                uint64_t before = stall_ms ? now_ns() : 0;
                put64(message, i);
                put64(message + 8, before);
                if (b->publish(p, message, sizeof message) < 0) {
                        fprintf(stderr, "%s: publish failed\n", b->name);
                        break;
                }
                if (stall_ms && now_ns() - before > worst)
                        worst = now_ns() - before;
        }
        uint64_t flush_start = now_ns();
        b->pub_flush(p);
        if (stall_ms && now_ns() - flush_start > worst)
                worst = now_ns() - flush_start;
        o.publish_s = (double)(now_ns() - start) / 1e9;
        atomic_store(&publisher_done_ns, now_ns());
        atomic_store(&publisher_done, 1);
        uint64_t delivered = 0, end = start, others = 0;
        double others_time = 0;
        for (int i = 0; i < subscribers; i++) {
                pthread_join(readers[i].thread, NULL);
                delivered += readers[i].received;
                if (readers[i].last_ns > end)
                        end = readers[i].last_ns;
                o.lost += total > readers[i].received ? total - readers[i].received : 0;
                o.ended += readers[i].ended;
                if (i > 0 || !stall_ms) {
                        others += readers[i].received;
                        others_time += (double)(readers[i].last_ns - start) / 1e9;
                }
        }
        o.rate = (double)delivered / ((double)(end - start) / 1e9);
        o.max_publish_ms = (double)worst / 1e6;
        if (stall_ms) {
                o.stalled_received = readers[0].received;
                o.stalled_ended = readers[0].ended;
                o.others_rate = others_time > 0 ? (double)others / others_time : 0;
        }
        for (int i = 0; i < subscribers; i++)
                b->sub_close(readers[i].sub);
        b->pub_close(p);
        free(readers);
        return o;
}

static int by_rate(const void *a, const void *c) {
        double x = ((const struct outcome *)a)->rate, y = ((const struct outcome *)c)->rate;
        return x < y ? -1 : x > y;
}

static void median_of_3(const char *name, const char *workload, int subscribers, uint64_t total) {
        struct outcome runs[3];
        uint64_t lost = 0;
        int ended = 0;
        for (int i = 0; i < 3; i++) {
                runs[i] = throughput(workload, subscribers, total, 0);
                lost += runs[i].lost;
                ended += runs[i].ended;
        }
        qsort(runs, 3, sizeof runs[0], by_rate);
        printf("RESULT %s %s rate=%.0f lost=%llu ended=%d runs=%.0f/%.0f/%.0f\n", b->name, name, runs[1].rate,
               (unsigned long long)lost, ended, runs[0].rate, runs[1].rate, runs[2].rate);
        fflush(stdout);
}

/* ---- Latency -------------------------------------------------------------------------------- */

static int by_value(const void *a, const void *c) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)c;
        return x < y ? -1 : x > y;
}

static void latency(int rate, int seconds) {
        char topic[128];
        topic_name(topic, sizeof topic, "w3");
        uint64_t total = (uint64_t)rate * (uint64_t)seconds;
        struct pub *p = b->pub_open(address, topic, 1);
        struct reader r;
        if (!p || open_readers(&r, 1, topic, total) < 0 || b->pub_ready(p, 1) < 0) {
                fprintf(stderr, "%s: cannot set up W3\n", b->name);
                exit(1);
        }
        r.latency_capacity = total;
        r.latencies = calloc(total, sizeof *r.latencies);
        atomic_store(&publisher_done, 0);
        pthread_create(&r.thread, NULL, reader_main, &r);
        uint8_t message[MESSAGE_SIZE];
        memset(message, 'l', sizeof message);
        uint64_t start = now_ns(), interval = 1000000000u / (uint64_t)rate;
        for (uint64_t i = 0; i < total; i++) {
                /* Sleep to the due time (no spinning: on a small machine a spinning publisher
                 * takes the core the server and the reader need). */
                uint64_t due = start + i * interval;
                struct timespec at = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
                        ;
                put64(message, i);
                put64(message + 8, now_ns());
                b->publish(p, message, sizeof message);
                b->pub_kick(p);
        }
        b->pub_flush(p);
        atomic_store(&publisher_done_ns, now_ns());
        atomic_store(&publisher_done, 1);
        pthread_join(r.thread, NULL);
        qsort(r.latencies, r.latency_count, sizeof *r.latencies, by_value);
        size_t n = r.latency_count;
        double p50 = n ? (double)r.latencies[n / 2] / 1e3 : 0, p99 = n ? (double)r.latencies[n * 99 / 100] / 1e3 : 0,
               p999 = n ? (double)r.latencies[n * 999 / 1000] / 1e3 : 0;
        printf("RESULT %s W3 p50=%.1f p99=%.1f p999=%.1f samples=%zu lost=%llu\n", b->name, p50, p99, p999, n,
               (unsigned long long)(total - r.received));
        fflush(stdout);
        free(r.latencies);
        b->sub_close(r.sub);
        b->pub_close(p);
}

/* ---- Memory --------------------------------------------------------------------------------- */

static long rss_kib(int pid) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/status", pid);
        FILE *f = fopen(path, "r");
        long kib = -1;
        while (f && fgets(line, sizeof line, f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        if (f)
                fclose(f);
        return kib;
}

/* "child:PID" names a server started by a launcher (dbus-broker-launch): its first child. */
static int resolve_server(const char *arg) {
        if (strncmp(arg, "child:", 6) != 0)
                return atoi(arg);
        char path[64];
        int parent = atoi(arg + 6), child = 0;
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", parent, parent);
        FILE *f = fopen(path, "r");
        if (f && fscanf(f, "%d", &child) != 1)
                child = 0;
        if (f)
                fclose(f);
        return child;
}

static const char *server_arg;

static void idle_memory(int subscribers) {
        char topic[128];
        topic_name(topic, sizeof topic, "w4");
        /* The publisher's connection also starts a socket-activated server (dbus-broker). */
        struct pub *p = b->pub_open(address, topic, 0);
        usleep(200000);
        server_pid = resolve_server(server_arg);
        if (server_pid <= 0 || !p) {
                printf("RESULT %s W4 none\n", b->name);
                if (p)
                        b->pub_close(p);
                return;
        }
        struct sub **subs = calloc((size_t)subscribers, sizeof *subs);
        usleep(300000);
        long before = rss_kib(server_pid);
        int opened = 0;
        for (; opened < subscribers; opened++)
                if (!(subs[opened] = b->sub_open(address, topic)))
                        break;
        usleep(500000);
        long after = rss_kib(server_pid);
        printf("RESULT %s W4 bytes=%.0f subscribers=%d rss_kib=%ld/%ld\n", b->name,
               opened ? (double)(after - before) * 1024 / opened : 0, opened, before, after);
        fflush(stdout);
        for (int i = 0; i < opened; i++)
                b->sub_close(subs[i]);
        free(subs);
        b->pub_close(p);
}

/* `driver SYSTEM ADDRESS 0 produce TOPIC COUNT`: only a publisher of COUNT messages (bench/python:
 * the feed of a reader written in another language), as fast as the system takes them. */
static int produce(const char *topic, uint64_t count) {
        struct pub *p = b->pub_open(address, topic, 0);
        if (!p || b->pub_ready(p, 1) < 0) {
                fprintf(stderr, "%s: cannot publish %s\n", b->name, topic);
                return 1;
        }
        uint8_t message[MESSAGE_SIZE];
        memset(message, 'p', sizeof message);
        uint64_t start = now_ns();
        for (uint64_t i = 0; i < count; i++) {
                put64(message, i);
                put64(message + 8, now_ns());
                if (b->publish(p, message, sizeof message) < 0) {
                        fprintf(stderr, "%s: publish %llu failed\n", b->name, (unsigned long long)i);
                        return 1;
                }
        }
        b->pub_flush(p);
        double seconds = (double)(now_ns() - start) / 1e9;
        printf("produced %llu in %.3f s (%.0f msgs/s)\n", (unsigned long long)count, seconds, (double)count / seconds);
        fflush(stdout);
        b->pub_close(p);
        return 0;
}

int main(int argc, char **argv) {
        if (argc >= 3 && strcmp(argv[1], "relay") == 0)
                return raw_relay_main(argv[2]);
        if (argc < 4) {
                fprintf(stderr, "usage: %s comet|comet-socket|comet-ring|redis|zeromq|nats|dbus|raw ADDRESS SERVER_PID\n", argv[0]);
                return 2;
        }
        const struct backend *all[] = {&comet_backend, &comet_socket_backend, &comet_ring_backend, &redis_backend, &zmq_backend, &nats_backend, &dbus_backend, &raw_backend};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
                if (strcmp(all[i]->name, argv[1]) == 0)
                        b = all[i];
        if (!b) {
                fprintf(stderr, "unknown system %s\n", argv[1]);
                return 2;
        }
        address = argv[2];
        server_arg = argv[3];
        if (argc >= 7 && strcmp(argv[4], "produce") == 0)
                return produce(argv[5], strtoull(argv[6], NULL, 10));
        struct rlimit limit;
        getrlimit(RLIMIT_NOFILE, &limit);
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
        prctl(PR_SET_TIMERSLACK, 1UL); /* precise sleeps for the latency run's pacing */
        const char *only = getenv("PEERS_ONLY");
        /* PEERS_SCALE (e.g. 0.1) shortens the runs: quick checks, and slow systems (D-Bus). */
        double scale = getenv("PEERS_SCALE") ? atof(getenv("PEERS_SCALE")) : 1.0;
        int quick = scale < 0.5;
        /* Memory first, on a server that has not yet served (and freed) anything. */
        if (!only || strstr(only, "w4"))
                idle_memory(1000);
        if (!only || strstr(only, "w1"))
                median_of_3("W1", "w1", 1, (uint64_t)(2000000 * scale));
        if (!only || strstr(only, "w2"))
                median_of_3("W2x10", "w2x10", 10, (uint64_t)(500000 * scale));
        if (!only || strstr(only, "w2"))
                median_of_3("W2x100", "w2x100", 100, (uint64_t)(100000 * scale));
        if (!only || strstr(only, "w3"))
                latency(10000, getenv("PEERS_LATENCY_SECONDS") ? atoi(getenv("PEERS_LATENCY_SECONDS")) : quick ? 1 : 5);
        if (!only || strstr(only, "probe")) {
                struct outcome o = throughput("probe", 3, 500000, 3000);
                printf("RESULT %s probe stalled_got=%llu stalled_ended=%d max_publish_ms=%.0f publish_s=%.2f others_rate=%.0f lost=%llu\n",
                       b->name, (unsigned long long)o.stalled_received, o.stalled_ended, o.max_publish_ms, o.publish_s,
                       o.others_rate, (unsigned long long)o.lost);
        }
        return 0;
}
