/* outbuf.h: a growable byte buffer for responses and rendered text. */
#ifndef IMDS_OUTBUF_H
#define IMDS_OUTBUF_H
#include <stddef.h>
#include <stdarg.h>

struct outbuf {
	char *data;
	size_t len;
	size_t cap;
};

/* Each returns 0 or -ENOMEM; on failure the buffer is unchanged. */
int outbuf_reserve(struct outbuf *b, size_t extra);
int outbuf_append(struct outbuf *b, const void *data, size_t len);
int outbuf_puts(struct outbuf *b, const char *s);
int outbuf_printf(struct outbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (sent data). */
void outbuf_consume(struct outbuf *b, size_t n);
void outbuf_reset(struct outbuf *b);
void outbuf_free(struct outbuf *b);

#endif
