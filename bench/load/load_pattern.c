/*
 * load_pattern.c - the pattern table and the check of echoed bytes against it (load_pattern.h).
 */
#include "load_pattern.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned char *load_pattern_table(uint32_t size)
{
    size_t len = LOAD_PATTERN_PERIOD + (size_t)size;
    unsigned char *table = malloc(len);
    if (table)
        for (size_t k = 0; k < len; k++)
            table[k] = (unsigned char)(((k % LOAD_PATTERN_PERIOD) * 97u + 31u) % LOAD_PATTERN_PERIOD);
    return table;
}

/* The index of the first of `len` bytes that differs from the pattern from stream offset `offset`, or len. */
static size_t first_difference(const unsigned char *table, uint32_t size, uint32_t seed, uint64_t offset,
                               const unsigned char *data, size_t len)
{
    size_t table_len = LOAD_PATTERN_PERIOD + (size_t)size;
    size_t position = (size_t)((seed + offset) % LOAD_PATTERN_PERIOD);
    size_t done = 0;
    while (done < len) {
        size_t n = len - done;
        if (n > table_len - position)
            n = table_len - position;
        if (memcmp(data + done, table + position, n) != 0) {
            for (size_t i = 0; i < n; i++)
                if (data[done + i] != table[position + i])
                    return done + i;
        }
        done += n;
        position = (position + n) % LOAD_PATTERN_PERIOD;
    }
    return len;
}

int load_pattern_check(const unsigned char *table, uint32_t size, uint32_t seed, uint64_t verified, uint64_t sent,
                       const unsigned char *data, size_t len, char *why, size_t why_size)
{
    uint64_t owed = sent - verified;
    size_t checked = len < owed ? len : (size_t)owed;
    size_t bad = first_difference(table, size, seed, verified, data, checked);
    if (bad < checked) {
        uint64_t offset = verified + bad;
        snprintf(why, why_size, "echoed byte %llu (message %llu, byte %llu) is 0x%02x, sent 0x%02x",
                 (unsigned long long)offset, (unsigned long long)(offset / size),
                 (unsigned long long)(offset % size), data[bad], table[(seed + offset) % LOAD_PATTERN_PERIOD]);
        return -1;
    }
    if (len > owed) {
        snprintf(why, why_size, "%llu bytes came back that were never sent", (unsigned long long)(len - owed));
        return -1;
    }
    return 0;
}
