/* bp_error.h - the one error enum of batchpipe, with a message and a class.
 * The worker's retry and dead-letter decisions read the class; the API maps it to a status. */
#ifndef BP_ERROR_H
#define BP_ERROR_H

#define BP_MUST_CHECK __attribute__((warn_unused_result))

typedef enum bp_err {
    BP_OK = 0,
    BP_ERR_INVALID,       /* input does not meet the schema or a limit */
    BP_ERR_NOT_FOUND,     /* the thing asked for does not exist */
    BP_ERR_CONFLICT,      /* the request contradicts the stored state */
    BP_ERR_NOMEM,         /* allocation failed */
    BP_ERR_PG_DOWN,       /* PostgreSQL cannot be reached (connection lost, refused) */
    BP_ERR_PG_TRANSIENT,  /* PostgreSQL refused for now: deadlock, serialization, shutdown */
    BP_ERR_PG_DATA,       /* PostgreSQL refuses this data for good */
    BP_ERR_KAFKA_DOWN,    /* the broker cannot take or give messages now */
    BP_ERR_QUEUE_FULL,    /* a local queue is at its limit: back-pressure */
    BP_ERR_TIMEOUT,       /* a deadline passed */
    BP_ERR_CONFIG,        /* a setting is missing or wrong */
    BP_ERR_FATAL,         /* an unrecoverable state: stop the process */
    BP_ERR__COUNT
} bp_err_t;

typedef enum bp_err_class {
    BP_CLASS_NONE = 0,
    BP_CLASS_RETRIABLE, /* try again later, in order, with backoff */
    BP_CLASS_PERMANENT, /* this input will never succeed: reject or dead-letter it */
    BP_CLASS_FATAL,     /* stop the process */
} bp_err_class_t;

/* Static description of an error ("invalid input", ...). Never NULL. */
const char *bp_err_str(bp_err_t err);

/* Whether an error is worth retrying, final for this input, or fatal. */
bp_err_class_t bp_err_class(bp_err_t err);

#endif
