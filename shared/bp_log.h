/* bp_log.h - structured logging: one JSON object per line on stderr.
 * Fields: ts, level, component, msg, and any extra key/values the caller adds. */
#ifndef BP_LOG_H
#define BP_LOG_H

#include <jansson.h>

typedef enum bp_log_level { BP_LOG_DEBUG = 0, BP_LOG_INFO, BP_LOG_WARN, BP_LOG_ERROR } bp_log_level_t;

/* Set once at start, before threads: the component name ("api", "ingest") and the lowest level
 * written. component is borrowed and must outlive the process (a string literal). */
void bp_log_init(const char *component, bp_log_level_t level);

/* Parse "debug", "info", "warn", "error". Returns 0 and sets *out, or -1. */
int bp_log_level_parse(const char *s, bp_log_level_t *out);

int bp_log_enabled(bp_log_level_t level);

/* Log a printf-style message. */
void bp_log(bp_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Log a message with extra fields. fields is borrowed (may be NULL); its keys are merged into the line.
 * Use for request ids, topic/partition/offset. */
void bp_log_fields(bp_log_level_t level, json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One per level. Named bp_log_<level>, like the rest of this module: a bare bp_error(...) read as part of
 * the error module (bp_error.h: bp_err_t, bp_err_str, bp_err_class), which it is not. */
#define bp_log_debug(...) bp_log(BP_LOG_DEBUG, __VA_ARGS__)
#define bp_log_info(...) bp_log(BP_LOG_INFO, __VA_ARGS__)
#define bp_log_warn(...) bp_log(BP_LOG_WARN, __VA_ARGS__)
#define bp_log_error(...) bp_log(BP_LOG_ERROR, __VA_ARGS__)

#endif
