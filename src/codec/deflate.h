/* SPDX-License-Identifier: Apache-2.0 */
/*
 * permessage-deflate (RFC 7692) over zlib: each message is raw DEFLATE data
 * ending in an empty stored block, whose last 4 bytes (00 00 ff ff) are cut
 * on the wire. No I/O: the callers own the streams and the buffers.
 */
#ifndef XR_DEFLATE_H
#define XR_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "util/buf.h"

enum { XR_Z_OK = 0, XR_Z_NOMEM = -1, XR_Z_TOO_BIG = -2, XR_Z_CORRUPT = -3 };

/* Compressor for an LZ77 window of 2^bits (9..15), zlib level 1..9. */
z_stream *xr_zdeflate_new(int bits, int level);
/* Decompressor for a peer window of 2^bits (8..15). */
z_stream *xr_zinflate_new(int bits);
void xr_zdeflate_free(z_stream *z);
void xr_zinflate_free(z_stream *z);

/*
 * Appends the compressed form of a then b (one message) to out, trailer cut.
 * The stream is reset first: every message stands alone, so a compressed
 * message can be shared by receivers whatever they negotiated.
 */
int xr_zdeflate(z_stream *z, const void *a, size_t alen, const void *b, size_t blen,
                xr_buf *out);

/*
 * Appends the decompressed message to out. limit caps what out may gain: a
 * small input that inflates beyond it gives XR_Z_TOO_BIG, having allocated
 * at most limit plus one chunk. reset drops the window afterwards (the
 * peer does not take over context, or the stream is shared).
 */
int xr_zinflate(z_stream *z, const void *in, size_t len, size_t limit, int reset,
                xr_buf *out);

/* Header of a stored (uncompressed) DEFLATE block of len <= 65535 bytes,
 * not final: lets a fan-out put a per-receiver prefix in front of a shared
 * compressed tail without compressing it. */
#define XR_Z_STORED_HEADER 5
void xr_zstored_header(uint8_t out[XR_Z_STORED_HEADER], size_t len);

#endif
