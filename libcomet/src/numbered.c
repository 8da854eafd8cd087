/* libcomet: numbered pushes (PUSH_NUMBERED, docs/PROTOCOL.md §6.18). With reconnection on and a
 * daemon that takes them, every push to a channel this connection created carries its producer
 * numbers; its frame is kept in the journal until answered, and after a reconnect the pushes
 * without an answer are sent again, in order, right after the channels are adopted: the daemon
 * skips what it has and answers each with the sequence numbers it got. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct produced *produced_find(comet *c, uint64_t channel) {
        for (size_t i = 0; i < c->produced_count; i++)
                if (c->produced[i].channel == channel)
                        return &c->produced[i];
        return NULL;
}

struct produced *numbering(comet *c, uint64_t channel) {
        if (!c->reconnect || !(c->features & 1))
                return NULL;
        return produced_find(c, channel);
}

void journal_add(comet *c, struct pending *p, size_t mark) {
        size_t len = buf_len(&c->out) - mark;
        if (buf_append(&c->journal, buf_head(&c->out) + mark, len) < 0) {
                /* Out of memory: the push is sent but cannot be sent again (as without numbers). */
                p->numbered = 0;
                return;
        }
        p->frame_len = (uint32_t)len;
}

/* Every pending numbered push of `channel` is doomed: an earlier one was refused. */
static void doom_after(comet *c, uint64_t channel) {
        for (size_t i = 0; i < c->pending_count; i++) {
                struct pending *q = &c->pending[(c->pending_head + i) % c->pending_capacity];
                if (q->id != 0 && q->numbered && q->channel == channel)
                        q->doomed = 1;
        }
}

void numbered_answered(comet *c, const struct pending *p, int error) {
        buf_consume(&c->journal, p->frame_len);
        if (error >= 0 || p->doomed)
                return;
        /* Refused: it used no number, and the pushes sent behind it will be refused as OUT_OF_ORDER.
         * The next push takes its number, in a frame of its own. */
        struct produced *pr = produced_find(c, p->channel);
        if (!pr)
                return;
        if (c->batch_open && c->batch_channel == p->channel)
                batch_close(c);
        doom_after(c, p->channel);
        pr->next_number = p->number;
}

void pending_keep_numbered(comet *c, int error) {
        size_t n = c->pending_count, kept = 0;
        struct pending *keep = n ? malloc(n * sizeof *keep) : NULL;
        if (n && !keep) {
                pending_fail_all(c, error);
                return;
        }
        while (c->pending_count > 0) {
                struct pending p = c->pending[c->pending_head];
                c->pending_head = (c->pending_head + 1) % c->pending_capacity;
                c->pending_count--;
                if (p.id == 0)
                        continue;
                if (p.numbered) {
                        keep[kept++] = p;
                        continue;
                }
                free(p.name);
                if (p.done)
                        p.done(c, error, 0, p.done_userdata);
        }
        c->pending_head = 0;
        for (size_t i = 0; i < kept; i++) {
                struct pending *q = pending_add(c, keep[i].id, keep[i].kind);
                if (q)
                        *q = keep[i];
        }
        free(keep);
}

/* Offset of the request id in a frame: after the length and the opcode. */
#define ID_AT 5

int journal_resend(comet *c) {
        struct buf kept = {0};
        size_t at = 0;
        struct pending *doomed = c->pending_count ? malloc(c->pending_count * sizeof *doomed) : NULL;
        size_t doomed_count = 0;
        int r = 0;
        if (c->pending_count && !doomed)
                return -ENOMEM;
        for (size_t i = 0; i < c->pending_count; i++) {
                struct pending *p = &c->pending[(c->pending_head + i) % c->pending_capacity];
                if (p->id == 0 || !p->numbered)
                        continue;
                const uint8_t *frame = buf_head(&c->journal) + at;
                at += p->frame_len;
                if (p->doomed) {
                        /* Refused behind an earlier refusal, as the daemon would have. */
                        doomed[doomed_count++] = *p;
                        p->id = 0;
                        continue;
                }
                uint32_t id = new_id(c);
                if ((r = buf_append(&kept, frame, p->frame_len)) < 0 || (r = buf_append(&c->out, frame, p->frame_len)) < 0)
                        break;
                set_be32(c->out.data + c->out.end - p->frame_len + ID_AT, id);
                p->id = id;
        }
        if (r < 0) {
                buf_free(&kept);
                free(doomed);
                return r;
        }
        buf_free(&c->journal);
        c->journal = kept;
        for (size_t i = 0; i < doomed_count; i++) {
                const struct pending *p = &doomed[i];
                int error = -COMET_E_OUT_OF_ORDER;
                if (p->done)
                        p->done(c, error, 0, p->done_userdata);
                else if (c->on_error)
                        for (uint32_t k = 0; k < p->count; k++)
                                c->on_error(c, p->channel, error, c->error_userdata);
        }
        free(doomed);
        return 0;
}
