/* Growable byte buffers and big-endian field access (internal to libcomet). */
#ifndef COMET_BUFFER_H
#define COMET_BUFFER_H

#include <stddef.h>
#include <stdint.h>

struct buf {
        uint8_t *data;
        size_t start; /* first unread byte */
        size_t end;   /* one past the last byte */
        size_t capacity;
};

void buf_free(struct buf *b);
int buf_reserve(struct buf *b, size_t more);
int buf_append(struct buf *b, const void *data, size_t size);
static inline size_t buf_len(const struct buf *b) { return b->end - b->start; }
static inline uint8_t *buf_head(const struct buf *b) { return b->data + b->start; }
void buf_consume(struct buf *b, size_t n);
static inline void buf_clear(struct buf *b) { b->start = b->end = 0; }

/* Stores `v` big-endian at `p` (4 bytes). */
static inline void set_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

int put_u8(struct buf *b, uint8_t v);
int put_u16(struct buf *b, uint16_t v);
int put_u32(struct buf *b, uint32_t v);
int put_u64(struct buf *b, uint64_t v);
int put_str(struct buf *b, const char *s);

/* Reading from a bounded region: each returns -EBADMSG when the region is too short. */
struct reader {
        const uint8_t *p;
        size_t left;
};
int get_u8(struct reader *r, uint8_t *v);
int get_u16(struct reader *r, uint16_t *v);
int get_u32(struct reader *r, uint32_t *v);
int get_u64(struct reader *r, uint64_t *v);
/* A u16-length string, copied into `out` (NUL-terminated, truncated to out_size - 1). */
int get_str(struct reader *r, char *out, size_t out_size);

/* Starts a frame (reserves its length prefix); frame_end() fills the length in. */
int frame_begin(struct buf *b, size_t *mark);
void frame_end(struct buf *b, size_t mark);

#endif
