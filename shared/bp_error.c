/* bp_error.c - names and classes of batchpipe's errors.
 * Kept in one table so that adding an error forces a decision about its class. */
#include "bp_error.h"

static const struct {
    const char *str;
    bp_err_class_t cls;
} errors[BP_ERR__COUNT] = {
    [BP_OK] = {"success", BP_CLASS_NONE},
    [BP_ERR_INVALID] = {"invalid input", BP_CLASS_PERMANENT},
    [BP_ERR_NOT_FOUND] = {"not found", BP_CLASS_PERMANENT},
    [BP_ERR_CONFLICT] = {"conflict", BP_CLASS_PERMANENT},
    [BP_ERR_NOMEM] = {"out of memory", BP_CLASS_RETRIABLE},
    [BP_ERR_PG_DOWN] = {"PostgreSQL unavailable", BP_CLASS_RETRIABLE},
    [BP_ERR_PG_TRANSIENT] = {"PostgreSQL transient failure", BP_CLASS_RETRIABLE},
    [BP_ERR_PG_DATA] = {"PostgreSQL refused the data", BP_CLASS_PERMANENT},
    [BP_ERR_KAFKA_DOWN] = {"Kafka unavailable", BP_CLASS_RETRIABLE},
    [BP_ERR_QUEUE_FULL] = {"local queue full", BP_CLASS_RETRIABLE},
    [BP_ERR_TIMEOUT] = {"deadline passed", BP_CLASS_RETRIABLE},
    [BP_ERR_CONFIG] = {"configuration error", BP_CLASS_FATAL},
    [BP_ERR_FATAL] = {"fatal error", BP_CLASS_FATAL},
};

const char *bp_err_str(bp_err_t err)
{
    if ((int)err < 0 || err >= BP_ERR__COUNT)
        return "unknown error";
    return errors[err].str;
}

bp_err_class_t bp_err_class(bp_err_t err)
{
    if ((int)err < 0 || err >= BP_ERR__COUNT)
        return BP_CLASS_FATAL;
    return errors[err].cls;
}
