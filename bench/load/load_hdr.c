/*
 * load_hdr.c - HdrHistogram's layout arithmetic and its V2 serialized form (see load_hdr.h), written from the
 * format's description: a 40-byte big-endian header (cookie, payload length, normalizing index offset, significant
 * digits, lowest discernible value, highest trackable value, integer-to-double ratio) and the counts as ZigZag
 * LEB128 words of at most 9 bytes, where a negative word N stands for -N empty buckets. The compressed form is a
 * second cookie, the deflated length and a zlib stream of the plain form; the log carries it in base64.
 *
 * Decoding takes text from files we did not write: every length is checked before it is used, the counts array is
 * sized from the histogram's own (checked) parameters, and inflation never writes past the size the header
 * announced.
 */
#include "load_hdr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef OVL_HAVE_ZLIB
#include <zlib.h>
#endif

enum {
    COOKIE_PLAIN = 0x1c849303,       /* V2 encoding */
    COOKIE_COMPRESSED = 0x1c849304,  /* V2 compressed encoding; the low nibble of the second byte is free */
    HEADER_SIZE = 40,
    WORD_MAX = 9,                    /* LEB128 with a full ninth byte holds 64 bits */
};

int load_hdr_layout_init(struct load_hdr_layout *l, int64_t lowest, int64_t highest, int digits)
{
    memset(l, 0, sizeof *l);
    if (lowest < 1 || digits < 0 || digits > 5 || highest / 2 < lowest)
        return -1;
    int64_t single_unit = 2;
    for (int i = 0; i < digits; i++)
        single_unit *= 10;
    unsigned count_magnitude = 0;
    while ((1ll << count_magnitude) < single_unit)
        count_magnitude++;
    l->sub_half_magnitude = (count_magnitude > 1 ? count_magnitude : 1) - 1;
    unsigned unit = 0;
    while (unit < 62 && (lowest >> (unit + 1)) != 0)
        unit++;
    l->unit_magnitude = unit;
    if (l->unit_magnitude + l->sub_half_magnitude > 61)
        return -1;
    /* Buckets: the first covers sub-bucket-count units; each further one doubles the range. */
    uint64_t untrackable = (2ull << l->sub_half_magnitude) << l->unit_magnitude;
    uint64_t buckets = 1;
    while (untrackable <= (uint64_t)highest) {
        if (untrackable > (uint64_t)INT64_MAX / 2) {
            buckets++;
            break;
        }
        untrackable <<= 1;
        buckets++;
    }
    uint64_t len = (buckets + 1) << l->sub_half_magnitude;
    if (len > LOAD_HDR_MAX_COUNTS)
        return -1;
    l->lowest = lowest;
    l->highest = highest;
    l->digits = digits;
    l->counts_len = (unsigned)len;
    return 0;
}

static unsigned bucket_of_index(const struct load_hdr_layout *l, unsigned index)
{
    unsigned bucket = index >> l->sub_half_magnitude;
    return bucket ? bucket - 1 : 0;
}

uint64_t load_hdr_lowest_at(const struct load_hdr_layout *l, unsigned index)
{
    unsigned half = 1u << l->sub_half_magnitude;
    unsigned raw = index >> l->sub_half_magnitude;
    uint64_t sub = (index & (half - 1)) + (raw ? half : 0);
    return sub << (bucket_of_index(l, index) + l->unit_magnitude);
}

uint64_t load_hdr_highest_at(const struct load_hdr_layout *l, unsigned index)
{
    return load_hdr_lowest_at(l, index) + (1ull << (bucket_of_index(l, index) + l->unit_magnitude)) - 1;
}

/* ---- bytes ---- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* ZigZag, then LEB128 of 7 bits a byte, except that a ninth byte carries 8. */
static size_t put_word(unsigned char *p, int64_t value)
{
    uint64_t u = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    size_t n = 0;
    for (; n < WORD_MAX - 1; n++) {
        if (u < 0x80) {
            p[n++] = (unsigned char)u;
            return n;
        }
        p[n] = (unsigned char)((u & 0x7f) | 0x80);
        u >>= 7;
    }
    p[n++] = (unsigned char)u;
    return n;
}

/* Reads one word from p[0..len). Returns the bytes used, or 0 when the word runs past the end. */
static size_t get_word(const unsigned char *p, size_t len, int64_t *value)
{
    uint64_t u = 0;
    size_t n = 0;
    for (;;) {
        if (n >= len)
            return 0;
        unsigned char b = p[n];
        if (n == WORD_MAX - 1) {
            u |= (uint64_t)b << 56;
            n++;
            break;
        }
        u |= (uint64_t)(b & 0x7f) << (7 * n);
        n++;
        if (!(b & 0x80))
            break;
    }
    *value = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
    return n;
}

static const char base64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t base64_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = base64_alphabet[v >> 18 & 63];
        out[o++] = base64_alphabet[v >> 12 & 63];
        out[o++] = i + 1 < len ? base64_alphabet[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? base64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

static int base64_value(char c)
{
    const char *p = c ? strchr(base64_alphabet, c) : NULL;
    return p ? (int)(p - base64_alphabet) : -1;
}

/* Standard base64, padding optional. Returns the decoded length, or -1. `out` needs len * 3 / 4 + 3 bytes. */
static long base64_decode(const char *in, size_t len, unsigned char *out)
{
    while (len && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = base64_value(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

/* ---- encoding ---- */

size_t load_hdr_encoded_bound(const struct load_hdr_layout *l)
{
    size_t plain = HEADER_SIZE + (size_t)l->counts_len * WORD_MAX;
    /* deflate's worst case is a little over the input; base64 is 4 per 3, plus the terminator */
    size_t compressed = 8 + plain + plain / 1000 + 64;
    return (compressed + 2) / 3 * 4 + 1;
}

long load_hdr_encode(const struct load_hdr_layout *l, const uint64_t *counts, char *out, size_t out_size,
                     char *error, size_t error_size)
{
#ifndef OVL_HAVE_ZLIB
    (void)l;
    (void)counts;
    (void)out;
    (void)out_size;
    snprintf(error, error_size, "not built with zlib: HdrHistogram logs are compressed with it");
    return -1;
#else
    if (out_size < load_hdr_encoded_bound(l)) {
        snprintf(error, error_size, "no room to encode the histogram");
        return -1;
    }
    size_t plain_size = HEADER_SIZE + (size_t)l->counts_len * WORD_MAX;
    uLong packed_bound = compressBound((uLong)plain_size);
    unsigned char *plain = malloc(plain_size);
    unsigned char *packed = malloc(8 + packed_bound);
    if (!plain || !packed) {
        free(plain);
        free(packed);
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    /* The counts up to the highest non-zero one (at least one word, as the reference writes an empty one). */
    unsigned limit = 1;
    for (unsigned i = l->counts_len; i > 0; i--)
        if (counts[i - 1]) {
            limit = i;
            break;
        }
    size_t n = HEADER_SIZE;
    for (unsigned i = 0; i < limit;) {
        if (counts[i]) {
            n += put_word(plain + n, (int64_t)(counts[i] > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : counts[i]));
            i++;
            continue;
        }
        unsigned zeros = 0;
        while (i < limit && !counts[i]) {
            zeros++;
            i++;
        }
        n += put_word(plain + n, zeros > 1 ? -(int64_t)zeros : 0);
    }
    put32(plain, COOKIE_PLAIN);
    put32(plain + 4, (uint32_t)(n - HEADER_SIZE));
    put32(plain + 8, 0);                         /* normalizing index offset */
    put32(plain + 12, (uint32_t)l->digits);
    put64(plain + 16, (uint64_t)l->lowest);
    put64(plain + 24, (uint64_t)l->highest);
    double ratio = 1.0;
    uint64_t ratio_bits;
    memcpy(&ratio_bits, &ratio, sizeof ratio_bits);
    put64(plain + 32, ratio_bits);
    uLongf packed_len = packed_bound;
    int rc = compress2(packed + 8, &packed_len, plain, (uLong)n, Z_BEST_COMPRESSION);
    free(plain);
    if (rc != Z_OK) {
        free(packed);
        snprintf(error, error_size, "deflate: zlib error %d", rc);
        return -1;
    }
    put32(packed, COOKIE_COMPRESSED);
    put32(packed + 4, (uint32_t)packed_len);
    size_t text_len = base64_encode(packed, 8 + packed_len, out);
    free(packed);
    return (long)text_len;
#endif
}

/* ---- decoding ---- */

/* The plain form, `len` bytes: parameters, then the counts. */
static int decode_plain(const unsigned char *p, size_t len, struct load_hdr_layout *l, uint64_t **counts_out,
                        char *error, size_t error_size)
{
    if (len < HEADER_SIZE) {
        snprintf(error, error_size, "histogram: %zu bytes, shorter than its header", len);
        return -1;
    }
    uint32_t cookie = get32(p);
    if ((cookie & ~0xf0u) != COOKIE_PLAIN) {
        snprintf(error, error_size, "histogram: cookie 0x%08x is not HdrHistogram's V2 encoding", cookie);
        return -1;
    }
    uint32_t payload = get32(p + 4);
    uint32_t offset = get32(p + 8);
    uint32_t digits = get32(p + 12);
    uint64_t lowest = get64(p + 16), highest = get64(p + 24);
    uint64_t ratio_bits = get64(p + 32);
    double ratio;
    memcpy(&ratio, &ratio_bits, sizeof ratio);
    if (payload > len - HEADER_SIZE) {
        snprintf(error, error_size, "histogram: payload of %u bytes, only %zu there", payload, len - HEADER_SIZE);
        return -1;
    }
    if (offset != 0) {
        snprintf(error, error_size, "histogram: normalizing index offset %u (shifted histograms are not supported)",
                 offset);
        return -1;
    }
    if (ratio != 1.0) {
        snprintf(error, error_size, "histogram: integer-to-double ratio %g (a DoubleHistogram, not supported)", ratio);
        return -1;
    }
    if (lowest > INT64_MAX || highest > INT64_MAX || digits > 5 ||
        load_hdr_layout_init(l, (int64_t)lowest, (int64_t)highest, (int)digits) < 0) {
        snprintf(error, error_size, "histogram: unsupported parameters (lowest %llu, highest %llu, %u digits)",
                 (unsigned long long)lowest, (unsigned long long)highest, digits);
        return -1;
    }
    uint64_t *counts = calloc(l->counts_len, sizeof *counts);
    if (!counts) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    const unsigned char *q = p + HEADER_SIZE;
    size_t at = 0;
    unsigned index = 0;
    while (at < payload) {
        int64_t word;
        size_t used = get_word(q + at, payload - at, &word);
        if (!used) {
            snprintf(error, error_size, "histogram: a count runs past the end of the payload");
            free(counts);
            return -1;
        }
        at += used;
        if (word < 0) {
            uint64_t zeros = word == INT64_MIN ? (uint64_t)INT64_MAX : (uint64_t)-word;
            if (zeros > l->counts_len - index) {
                snprintf(error, error_size, "histogram: empty buckets past the end of the counts array (%u)",
                         l->counts_len);
                free(counts);
                return -1;
            }
            index += (unsigned)zeros;
        } else {
            if (index >= l->counts_len) {
                snprintf(error, error_size, "histogram: more counts than the array holds (%u)", l->counts_len);
                free(counts);
                return -1;
            }
            counts[index++] = (uint64_t)word;
        }
    }
    *counts_out = counts;
    return 0;
}

int load_hdr_decode(const char *text, size_t len, struct load_hdr_layout *l, uint64_t **counts, char *error,
                    size_t error_size)
{
    *counts = NULL;
    if (len > 64u << 20) {
        snprintf(error, error_size, "histogram: %zu characters of base64 is more than accepted", len);
        return -1;
    }
    unsigned char *raw = malloc(len / 4 * 3 + 4);
    if (!raw) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    long raw_len = base64_decode(text, len, raw);
    if (raw_len < 0) {
        free(raw);
        snprintf(error, error_size, "histogram: not base64");
        return -1;
    }
    if (raw_len < 8) {
        free(raw);
        snprintf(error, error_size, "histogram: %ld bytes, too short", raw_len);
        return -1;
    }
    uint32_t cookie = get32(raw);
    if ((cookie & ~0xf0u) == COOKIE_PLAIN) {
        int rc = decode_plain(raw, (size_t)raw_len, l, counts, error, error_size);
        free(raw);
        return rc;
    }
    if ((cookie & ~0xf0u) != COOKIE_COMPRESSED) {
        free(raw);
        snprintf(error, error_size, "histogram: cookie 0x%08x is not HdrHistogram's V2 compressed encoding", cookie);
        return -1;
    }
#ifndef OVL_HAVE_ZLIB
    free(raw);
    snprintf(error, error_size, "not built with zlib: cannot inflate HdrHistogram logs");
    return -1;
#else
    uint32_t packed_len = get32(raw + 4);
    if (packed_len > (uint64_t)raw_len - 8) {
        snprintf(error, error_size, "histogram: %u compressed bytes announced, %ld there", packed_len, raw_len - 8);
        free(raw);
        return -1;
    }
    /* Inflate the header first: its payload length bounds the rest. */
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) {
        free(raw);
        snprintf(error, error_size, "inflate: cannot start");
        return -1;
    }
    unsigned char header[HEADER_SIZE];
    z.next_in = raw + 8;
    z.avail_in = packed_len;
    z.next_out = header;
    z.avail_out = HEADER_SIZE;
    int rc = inflate(&z, Z_SYNC_FLUSH);
    if ((rc != Z_OK && rc != Z_STREAM_END) || z.avail_out != 0) {
        inflateEnd(&z);
        free(raw);
        snprintf(error, error_size, "histogram: the compressed data is corrupt (header)");
        return -1;
    }
    uint32_t payload = get32(header + 4);
    if ((get32(header) & ~0xf0u) != COOKIE_PLAIN || payload > (uint64_t)LOAD_HDR_MAX_COUNTS * WORD_MAX) {
        inflateEnd(&z);
        free(raw);
        snprintf(error, error_size, "histogram: the inflated header is not a V2 histogram");
        return -1;
    }
    unsigned char *plain = malloc(HEADER_SIZE + (size_t)payload + 1);
    if (!plain) {
        inflateEnd(&z);
        free(raw);
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    memcpy(plain, header, HEADER_SIZE);
    z.next_out = plain + HEADER_SIZE;
    z.avail_out = payload + 1; /* one byte more: data past the announced payload is an error */
    if (rc != Z_STREAM_END)
        rc = inflate(&z, Z_FINISH);
    size_t got = HEADER_SIZE + (payload + 1 - z.avail_out);
    inflateEnd(&z);
    free(raw);
    if (rc != Z_STREAM_END || got != HEADER_SIZE + (size_t)payload) {
        free(plain);
        snprintf(error, error_size, "histogram: the compressed data is corrupt or not of the announced length");
        return -1;
    }
    rc = decode_plain(plain, got, l, counts, error, error_size);
    free(plain);
    return rc;
#endif
}

unsigned load_hdr_quantile_index(const uint64_t *counts, unsigned len, uint64_t total, double q)
{
    double exact = q * (double)total;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < len; i++) {
        seen += counts[i];
        if (seen >= rank)
            return i;
    }
    return len;
}
