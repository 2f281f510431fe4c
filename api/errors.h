/* errors.h - turns the plain-text errors h2o answers by itself (a body over the size limit, a broken
 * request line or encoding, an unknown Expect) into the API's problem+json format. */
#ifndef BP_ERRORS_H
#define BP_ERRORS_H

#include <h2o.h>

/* Register the rewriting filter on hostconf's fallback path, where h2o binds the requests it rejects
 * before routing them. max_body_bytes is quoted in the 413 detail. */
void bp_errors_register(h2o_hostconf_t *hostconf, long long max_body_bytes);

#endif
