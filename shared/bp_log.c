/* bp_log.c - JSON-lines logger shared by every binary.
 * Lines are built with jansson (messages may hold quotes and newlines) and written with one write(2). */
#include "bp_log.h"
#include "bp_utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_component = "batchpipe";
static bp_log_level_t log_min_level = BP_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void bp_log_init(const char *component, bp_log_level_t level)
{
    log_component = component;
    log_min_level = level;
}

int bp_log_level_parse(const char *s, bp_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (bp_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = BP_LOG_WARN;
        return 0;
    }
    return -1;
}

int bp_log_enabled(bp_log_level_t level)
{
    return level >= log_min_level;
}

static void log_emit(bp_log_level_t level, json_t *fields, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void log_emit(bp_log_level_t level, json_t *fields, const char *fmt, va_list ap)
{
    char msg[2048], ts[40];
    struct timeval tv;
    struct tm tm;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

    json_t *line = json_object();
    if (line == NULL)
        return;
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(level_names[level]));
    json_object_set_new(line, "component", json_string(log_component));
    /* msg may quote input that is not UTF-8, which json_string refuses: show those bytes as '?' */
    bp_utf8_sanitize(msg);
    json_object_set_new(line, "msg", json_string(msg));
    if (fields != NULL)
        json_object_update(line, fields);
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: written with an explicit length */
    ssize_t rc = write(STDERR_FILENO, text, len + 1);
    (void)rc;
    free(text);
}

void bp_log(bp_log_level_t level, const char *fmt, ...)
{
    if (!bp_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_emit(level, NULL, fmt, ap);
    va_end(ap);
}

void bp_log_fields(bp_log_level_t level, json_t *fields, const char *fmt, ...)
{
    if (!bp_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_emit(level, fields, fmt, ap);
    va_end(ap);
}
