/* Streams: creation, purge, last message, asynchronous publishing. */
#include "bridge.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cn_stream_config(jsStreamConfig *cfg, const char *stream, const char **subjects, bool memory, int replicas) {
    jsStreamConfig_Init(cfg);
    cfg->Name = stream;
    cfg->Subjects = subjects;
    cfg->SubjectsLen = 1;
    cfg->Storage = memory ? js_MemoryStorage : js_FileStorage;
    cfg->Replicas = replicas > 0 ? replicas : 1;
}

int cn_ensure_stream(cn_link *l, const char *stream, const char *subject, int64_t max_msgs, bool memory, int replicas,
                     int64_t duplicates_ms, char *err, size_t errlen) {
    jsStreamConfig cfg;
    const char *subjects[1] = {subject};
    cn_stream_config(&cfg, stream, subjects, memory, replicas);
    cfg.MaxMsgs = max_msgs;
    cfg.Duplicates = duplicates_ms * 1000000;
    cfg.Description = "mirror of a cometd channel (Comet-Epoch/Comet-Seq headers)";
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    natsStatus s = js_AddStream(&si, l->js, &cfg, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        jerr = 0;
        s = js_UpdateStream(&si, l->js, &cfg, NULL, &jerr);
    }
    if (si) jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        cn_say(err, errlen, "cannot make the stream", s, jerr);
        return CN_ERROR;
    }
    return CN_OK;
}

int cn_purge(cn_link *l, const char *stream, char *err, size_t errlen) {
    jsErrCode jerr = 0;
    natsStatus s = js_PurgeStream(l->js, stream, NULL, &jerr);
    if (s != NATS_OK) {
        cn_say(err, errlen, "cannot purge the stream", s, jerr);
        return CN_ERROR;
    }
    return CN_OK;
}

int cn_last(cn_link *l, const char *stream, const char *subject, cn_delivery *out, char *err, size_t errlen) {
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    memset(out, 0, sizeof *out);
    natsStatus s = js_GetLastMsg(&m, l->js, stream, subject, NULL, &jerr);
    if (s != NATS_OK) {
        if (jerr == JSNoMessageFoundErr) return CN_NONE;
        if (jerr == JSStreamNotFoundErr) return CN_NO_STREAM;
        cn_say(err, errlen, "cannot read the stream's last message", s, jerr);
        return CN_ERROR;
    }
    cn_parse(m, out);
    out->stream_seq = natsMsg_GetSequence(m);
    natsMsg_Destroy(m);
    return CN_OK;
}

int cn_publish(cn_link *l, const char *subject, int event, uint64_t epoch, uint64_t seq, uint64_t count, const char *msg_id,
               uint64_t expect_last_seq, const void *data, size_t len, char *err, size_t errlen) {
    natsMsg *m = NULL;
    char number[24];
    natsStatus s = natsMsg_Create(&m, subject, NULL, data, (int)len);
    if (s == NATS_OK) {
        snprintf(number, sizeof number, "%" PRIu64, epoch);
        s = natsMsgHeader_Set(m, "Comet-Epoch", number);
    }
    if (s == NATS_OK) {
        snprintf(number, sizeof number, "%" PRIu64, seq);
        if (event == CN_OPEN) {
            s = natsMsgHeader_Set(m, "Comet-Event", "open");
            if (s == NATS_OK) s = natsMsgHeader_Set(m, "Comet-Next", number);
        } else if (event == CN_CLOSE) {
            s = natsMsgHeader_Set(m, "Comet-Event", "close");
            if (s == NATS_OK) s = natsMsgHeader_Set(m, "Comet-Last", number);
        } else {
            s = natsMsgHeader_Set(m, "Comet-Seq", number);
            if (s == NATS_OK && count > 1) {
                s = natsMsgHeader_Set(m, "Comet-Event", "run");
                snprintf(number, sizeof number, "%" PRIu64, count);
                if (s == NATS_OK) s = natsMsgHeader_Set(m, "Comet-Count", number);
            }
        }
    }
    if (s == NATS_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = msg_id;
        po.ExpectLastSeq = expect_last_seq;
        s = js_PublishMsgAsync(l->js, &m, &po);
    }
    if (m) natsMsg_Destroy(m); /* still ours only when publishing failed */
    if (s != NATS_OK) {
        cn_say(err, errlen, "cannot publish", s, 0);
        return CN_ERROR;
    }
    return CN_OK;
}

int cn_publish_complete(cn_link *l, int64_t timeout_ms) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms;
    return js_PublishAsyncComplete(l->js, &po) == NATS_OK ? CN_OK : CN_ERROR;
}
