/* The ceiling comet-bench measures comet-bridge's export against: a plain nats.c publisher. */
#include "bridge.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double cn_bench_publish(const char *const *servers, int servers_len, const char *stream, const char *subject, int replicas,
                        int count, int size, int max_pending, char *err, size_t errlen) {
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsErrCode jerr = 0;
    double rate = -1;
    char *data = calloc(1, (size_t)(size > 0 ? size : 1));
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK) s = natsOptions_SetServers(opts, (const char **)servers, servers_len);
    if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
    if (s != NATS_OK) {
        cn_say(err, errlen, "cannot connect", s, 0);
        goto done;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = max_pending;
    jo.Wait = 10000;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) {
        cn_say(err, errlen, "cannot use JetStream", s, 0);
        goto done;
    }
    js_DeleteStream(js, stream, NULL, NULL);
    jsStreamConfig cfg;
    const char *subjects[1] = {subject};
    cn_stream_config(&cfg, stream, subjects, false, replicas);
    jsStreamInfo *si = NULL;
    /* A cluster may still be electing its JetStream leader: try for a while. */
    for (int attempt = 0; attempt < 50; attempt++) {
        jerr = 0;
        if ((s = js_AddStream(&si, js, &cfg, NULL, &jerr)) == NATS_OK) break;
        struct timespec pause = {0, 200000000};
        nanosleep(&pause, NULL);
    }
    if (si) jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        cn_say(err, errlen, "cannot make the stream", s, jerr);
        goto done;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < count && s == NATS_OK; i++) s = js_PublishAsync(js, subject, data, size, NULL);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 120000;
    if (s == NATS_OK) s = js_PublishAsyncComplete(js, &po);
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (s != NATS_OK) {
        cn_say(err, errlen, "publishing failed", s, 0);
        goto done;
    }
    rate = count / ((double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9);
    js_DeleteStream(js, stream, NULL, NULL);
done:
    if (js) jsCtx_Destroy(js);
    if (nc) natsConnection_Destroy(nc);
    if (opts) natsOptions_Destroy(opts);
    free(data);
    return rate;
}
