/* write.c - POST /api/v1/batches/ and /api/v1/objects/. (Filled in by the write path.) */
#include "router.h"

const bp_route_t bp_write_routes[] = {
    {NULL, NULL, NULL},
};
