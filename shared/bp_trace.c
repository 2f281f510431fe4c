/* bp_trace.c - the traceparent check of bp_trace.h: the API ignores an invalid header (the POST still
 * succeeds), the worker drops one that another producer wrote badly, so logs carry only valid ids. */
#include "bp_trace.h"

static int lower_hex(const char *s, size_t n, int *all_zero)
{
    *all_zero = 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        if (c != '0')
            *all_zero = 0;
    }
    return 1;
}

int bp_traceparent_valid(const char *s, size_t len)
{
    int zero;
    if (s == NULL || len < BP_TRACEPARENT_LEN)
        return 0;
    if (!lower_hex(s, 2, &zero) || (s[0] == 'f' && s[1] == 'f') || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return 0;
    if (!lower_hex(s + 3, 32, &zero) || zero || !lower_hex(s + 36, 16, &zero) || zero ||
        !lower_hex(s + 53, 2, &zero))
        return 0;
    if (s[0] == '0' && s[1] == '0')
        return len == BP_TRACEPARENT_LEN;
    return len == BP_TRACEPARENT_LEN || s[BP_TRACEPARENT_LEN] == '-';
}
