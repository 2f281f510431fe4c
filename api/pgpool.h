/* pgpool.h - a bounded per-thread pool of asynchronous PostgreSQL connections on the event loop. */
#ifndef BP_PGPOOL_H
#define BP_PGPOOL_H

#include "server.h"

#endif
