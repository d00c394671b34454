/*
 * fuzz_hdr_decode.c - libFuzzer target for the HdrHistogram decoder (bench/load/load_hdr.c) that `overlap-load merge`
 * runs on log lines it did not write. The first byte picks what the rest is: 0, the base64 text of a log line as it
 * stands; 1, the bytes a base64 text decodes to (plain or compressed encoding); 2, a plain V2 encoding, which this
 * target deflates and wraps as the compressed form, so the fuzzer reaches the counts decoder past zlib. Besides what
 * the sanitizers catch: a refusal comes with a message, and an accepted histogram has a layout within the bounds
 * and a counts array of exactly that length (summed here, so ASan sees every count read). Built and run by
 * scripts/fuzz; seeds in tests/corpus/hdr_decode/.
 */
#include "load_hdr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_hdr_decode: %s\n", what);
        abort();
    }
}

static char *base64(const unsigned char *in, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(len / 3 * 4 + 8);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < len ? in[i + 2] : 0);
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = i + 1 < len ? alphabet[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    data++;
    size--;
    char *text;
    size_t text_len;
    if (mode == 0) {
        text = malloc(size + 1);
        memcpy(text, data, size);
        text[size] = '\0';
        text_len = size;
    } else if (mode == 1) {
        text = base64(data, size);
        text_len = strlen(text);
    } else {
        uLongf packed_len = compressBound((uLong)size);
        unsigned char *packed = malloc(8 + packed_len);
        check(compress(packed + 8, &packed_len, data, (uLong)size) == Z_OK, "compress");
        const unsigned char head[4] = {0x1c, 0x84, 0x93, 0x04};
        memcpy(packed, head, 4);
        packed[4] = (unsigned char)(packed_len >> 24);
        packed[5] = (unsigned char)(packed_len >> 16);
        packed[6] = (unsigned char)(packed_len >> 8);
        packed[7] = (unsigned char)packed_len;
        text = base64(packed, 8 + packed_len);
        text_len = strlen(text);
        free(packed);
    }
    struct load_hdr_layout layout;
    uint64_t *counts = NULL;
    char error[256] = "";
    if (load_hdr_decode(text, text_len, &layout, &counts, error, sizeof error) == 0) {
        check(counts != NULL, "accepted without counts");
        check(layout.counts_len >= 1 && layout.counts_len <= LOAD_HDR_MAX_COUNTS, "counts length out of bounds");
        check(layout.digits >= 0 && layout.digits <= 5 && layout.lowest >= 1 && layout.highest / 2 >= layout.lowest,
              "parameters out of bounds");
        uint64_t sum = 0;
        for (unsigned i = 0; i < layout.counts_len; i++)
            sum += counts[i];
        (void)sum;
        free(counts);
    } else {
        check(counts == NULL, "refused but returned counts");
        check(error[0] != '\0' && !strchr(error, '\n'), "a refusal without a one-line message");
    }
    free(text);
    return 0;
}
