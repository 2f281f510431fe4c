/* pgpool.c - asynchronous PostgreSQL connections joined to the event loop. (Filled in by the read path.) */
#include "pgpool.h"

const bp_api_module_t bp_pgpool_module = {"pgpool", NULL, NULL};
