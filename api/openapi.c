/* openapi.c - GET /api/v1/openapi.json: the OpenAPI 3.1 document of the whole API.
 * Its source is schemas/openapi.json; the build inlines the payload schemas (schemas/batch.schema.json,
 * schemas/object.schema.json) into components/schemas and embeds the result (api/embed_openapi.cmake). */
#include "http.h"
#include "read.h"

extern const unsigned char bp_openapi_json[];
extern const size_t bp_openapi_json_len;

int bp_openapi_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = bp_openapi_json_len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("public, max-age=300"));
    h2o_send_inline(req, (const char *)bp_openapi_json, bp_openapi_json_len);
    return 0;
}
