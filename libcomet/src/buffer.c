#include "buffer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void buf_free(struct buf *b) {
        free(b->data);
        memset(b, 0, sizeof *b);
}

int buf_reserve(struct buf *b, size_t more) {
        if (b->end + more <= b->capacity)
                return 0;
        /* Slide unread bytes to the front before growing. */
        if (b->start > 0) {
                memmove(b->data, b->data + b->start, b->end - b->start);
                b->end -= b->start;
                b->start = 0;
                if (b->end + more <= b->capacity)
                        return 0;
        }
        size_t want = b->capacity ? b->capacity : 4096;
        while (want < b->end + more) {
                if (want > SIZE_MAX / 2)
                        return -ENOMEM;
                want *= 2;
        }
        uint8_t *p = realloc(b->data, want);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->capacity = want;
        return 0;
}

int buf_append(struct buf *b, const void *data, size_t size) {
        int r = buf_reserve(b, size);
        if (r < 0)
                return r;
        if (size > 0)
                memcpy(b->data + b->end, data, size);
        b->end += size;
        return 0;
}

void buf_consume(struct buf *b, size_t n) {
        b->start += n;
        if (b->start == b->end)
                b->start = b->end = 0;
}

int put_u8(struct buf *b, uint8_t v) { return buf_append(b, &v, 1); }

int put_u16(struct buf *b, uint16_t v) {
        uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
        return buf_append(b, x, 2);
}

int put_u32(struct buf *b, uint32_t v) {
        uint8_t x[4];
        set_be32(x, v);
        return buf_append(b, x, 4);
}

int put_u64(struct buf *b, uint64_t v) {
        int r = put_u32(b, (uint32_t)(v >> 32));
        return r < 0 ? r : put_u32(b, (uint32_t)v);
}

int put_str(struct buf *b, const char *s) {
        size_t n = strlen(s);
        if (n > UINT16_MAX)
                return -EINVAL;
        int r = put_u16(b, (uint16_t)n);
        return r < 0 ? r : buf_append(b, s, n);
}

int get_u8(struct reader *r, uint8_t *v) {
        if (r->left < 1)
                return -EBADMSG;
        *v = r->p[0];
        r->p += 1;
        r->left -= 1;
        return 0;
}

int get_u16(struct reader *r, uint16_t *v) {
        if (r->left < 2)
                return -EBADMSG;
        *v = (uint16_t)(r->p[0] << 8 | r->p[1]);
        r->p += 2;
        r->left -= 2;
        return 0;
}

int get_u32(struct reader *r, uint32_t *v) {
        if (r->left < 4)
                return -EBADMSG;
        *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
        r->p += 4;
        r->left -= 4;
        return 0;
}

int get_u64(struct reader *r, uint64_t *v) {
        uint32_t hi, lo;
        if (get_u32(r, &hi) < 0 || get_u32(r, &lo) < 0)
                return -EBADMSG;
        *v = (uint64_t)hi << 32 | lo;
        return 0;
}

int get_str(struct reader *r, char *out, size_t out_size) {
        uint16_t n;
        if (get_u16(r, &n) < 0 || r->left < n)
                return -EBADMSG;
        size_t copy = n < out_size - 1 ? n : out_size - 1;
        memcpy(out, r->p, copy);
        out[copy] = 0;
        r->p += n;
        r->left -= n;
        return 0;
}

int frame_begin(struct buf *b, size_t *mark) {
        int r = buf_reserve(b, 4);
        if (r < 0)
                return r;
        /* Relative to `start`: buf_reserve() may slide the buffer while the frame grows. */
        *mark = b->end - b->start;
        b->end += 4;
        return 0;
}

void frame_end(struct buf *b, size_t mark) {
        size_t at = b->start + mark;
        set_be32(b->data + at, (uint32_t)(b->end - at - 4));
}
