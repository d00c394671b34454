/*
 * load_hdr.h - HdrHistogram's bucket layout and its V2 encoding, so that overlap-load's histograms are
 * HdrHistogram histograms: the same index for every value, the same counts array, and a serialized form
 * (cookie 0x1c849304 compressed, 0x1c849303 plain) that the reference implementations read and write.
 *
 * The layout (HdrHistogram's AbstractHistogram): with D significant decimal digits the first range has
 * 2^ceil(log2(2 * 10^D)) sub-buckets of width 2^unit_magnitude; every further power of two adds half as many of
 * twice the width. So every value is within 1 / 2^(sub_half_magnitude) of the top of its bucket (0.1% for D = 3).
 */
#ifndef OVL_LOAD_HDR_H
#define OVL_LOAD_HDR_H

#include <stddef.h>
#include <stdint.h>

/* The largest counts array accepted (a decoded histogram's parameters are checked against it): 2^22 counts. */
#define LOAD_HDR_MAX_COUNTS (1u << 22)

struct load_hdr_layout {
    int64_t lowest;                 /* lowest discernible value, >= 1 */
    int64_t highest;                /* highest trackable value, >= 2 * lowest */
    int digits;                     /* significant decimal digits, 0..5 */
    unsigned unit_magnitude;        /* floor(log2(lowest)) */
    unsigned sub_half_magnitude;    /* log2(sub-bucket count) - 1 */
    unsigned counts_len;            /* length of the counts array */
};

/* Fill `layout` for these parameters as HdrHistogram does. Returns 0, or -1 when they are out of range (lowest <
 * 1, highest < 2 * lowest, digits outside 0..5, or a counts array over LOAD_HDR_MAX_COUNTS). */
int load_hdr_layout_init(struct load_hdr_layout *layout, int64_t lowest, int64_t highest, int digits);

/* The counts index of value v (0 <= v <= highest; callers clamp). */
static inline unsigned load_hdr_index(const struct load_hdr_layout *l, uint64_t v)
{
    uint64_t mask = ((2ull << l->sub_half_magnitude) - 1) << l->unit_magnitude;
    unsigned base = 64u - l->unit_magnitude - l->sub_half_magnitude - 1u;
    unsigned bucket = base - (unsigned)__builtin_clzll(v | mask);
    unsigned sub = (unsigned)(v >> (bucket + l->unit_magnitude));
    return ((bucket + 1u) << l->sub_half_magnitude) + sub - (1u << l->sub_half_magnitude);
}

/* The lowest and the highest value that land at `index`. */
uint64_t load_hdr_lowest_at(const struct load_hdr_layout *l, unsigned index);
uint64_t load_hdr_highest_at(const struct load_hdr_layout *l, unsigned index);
/* The bucket that holds quantile q (0..1) of `total` samples counted in counts[0..len): the first where the running
 * count reaches ceil(q * total), at least 1 (HdrHistogram's rule). len when the counts hold fewer. */
unsigned load_hdr_quantile_index(const uint64_t *counts, unsigned len, uint64_t total, double q);

/* Serialize counts[0..counts_len) (the layout's array) in HdrHistogram's V2 compressed encoding, base64, into
 * `out` (NUL-terminated). Returns the length of the text, or -1 with a reason in `error` (no zlib, no room). */
long load_hdr_encode(const struct load_hdr_layout *l, const uint64_t *counts, char *out, size_t out_size,
                     char *error, size_t error_size);
/* Room load_hdr_encode needs at most for a histogram of this layout. */
size_t load_hdr_encoded_bound(const struct load_hdr_layout *l);

/* Decode one base64 V2 histogram (compressed or not). On success returns 0, fills `layout` from the histogram's
 * own parameters and *counts with a new array of layout->counts_len counts (free() it). Returns -1 with a reason
 * in `error` for anything else: bad base64, unknown cookie, a length that does not add up, a corrupt deflate
 * stream, a count past the array, a DoubleHistogram, a normalizing offset. Never reads outside its input. */
int load_hdr_decode(const char *text, size_t len, struct load_hdr_layout *layout, uint64_t **counts,
                    char *error, size_t error_size);

#endif
