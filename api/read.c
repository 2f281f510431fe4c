/* read.c - GET and DELETE of batches and objects. (Filled in by the read path.) */
#include "router.h"

const bp_route_t bp_read_routes[] = {
    {NULL, NULL, NULL},
};
