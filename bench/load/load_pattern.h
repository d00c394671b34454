/*
 * load_pattern.h - what overlap-load sends and how it checks what comes back, for every client model.
 *
 * Byte j of a connection's stream is table[(seed + j) % 251]; table[k] = (97 k + 31) mod 251 is a bijection on
 * 0..250, so a byte that comes back shifted by any distance that is not a multiple of 251 (lost, repeated or
 * reordered bytes), or from another connection (another seed), differs. The table holds 251 + size bytes, so every
 * message is one contiguous slice of it: nothing is copied or allocated per message, and a received buffer is
 * compared in place with memcmp.
 */
#ifndef OVL_LOAD_PATTERN_H
#define OVL_LOAD_PATTERN_H

#include <stddef.h>
#include <stdint.h>

enum { LOAD_PATTERN_PERIOD = 251 };

/* The table for messages of `size` bytes (251 + size bytes, malloc'd; free() it), or NULL when out of memory. */
unsigned char *load_pattern_table(uint32_t size);

/* The seed of connection `generation` (1, 2, ... under --churn) of slot `index`. */
static inline uint32_t load_pattern_seed(uint32_t index, uint32_t generation)
{
    return (index * 37u + generation * 11u) % LOAD_PATTERN_PERIOD;
}

/* The message that starts at stream offset `offset`: `size` contiguous bytes from here. */
static inline const unsigned char *load_pattern_at(const unsigned char *table, uint32_t seed, uint64_t offset)
{
    return table + (seed + offset) % LOAD_PATTERN_PERIOD;
}

/* Check `len` echoed bytes that arrived at stream offset `verified` of a connection that has sent `sent` bytes.
 * Returns 0 when they are the bytes sent there, or -1 with why they are not in `why` ("echoed byte 1000 (message
 * 10, byte 0) is 0xf0, sent 0xd0", or bytes that were never sent). */
int load_pattern_check(const unsigned char *table, uint32_t size, uint32_t seed, uint64_t verified, uint64_t sent,
                       const unsigned char *data, size_t len, char *why, size_t why_size);

#endif
