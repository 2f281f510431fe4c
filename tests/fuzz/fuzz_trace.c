/* fuzz_trace.c - fuzz target for the traceparent check (shared/bp_trace.h), which reads a header any
 * client sends and any publisher writes: it never reads past the input, and what it accepts is what
 * the API puts into a Kafka header and the worker into a log line - the W3C fields, lowercase hex.
 *
 * Input: the header's bytes, as they are (not NUL-terminated). */
#include <string.h>

#include "bp_trace.h"
#include "fuzz.h"

static int hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes: AddressSanitizer catches a read past the header */
    char *s = malloc(size ? size : 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    if (bp_traceparent_valid(s, size)) {
        FUZZ_CHECK(size >= BP_TRACEPARENT_LEN);
        for (size_t i = 0; i < BP_TRACEPARENT_LEN; i++)
            FUZZ_CHECK(i == 2 || i == 35 || i == 52 ? s[i] == '-' : hex(s[i]));
        FUZZ_CHECK(!(s[0] == 'f' && s[1] == 'f'));
        FUZZ_CHECK(size == BP_TRACEPARENT_LEN || (memcmp(s, "00", 2) != 0 && s[BP_TRACEPARENT_LEN] == '-'));
    }
    free(s);
    return 0;
}
