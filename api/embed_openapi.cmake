# embed_openapi.cmake - build step (cmake -P): schemas/openapi.json with the payload schemas set into
# components/schemas/Batch and /Object, checked as JSON, written as a C array for api/openapi.c.
# Usage: cmake -DSRC=<schemas dir> -DOUT=<file.c> -P embed_openapi.cmake
file(READ ${SRC}/openapi.json spec)
file(READ ${SRC}/batch.schema.json batch)
file(READ ${SRC}/object.schema.json object)
# string(JSON) fails the build on invalid JSON in any of the three files
string(JSON version GET "${spec}" openapi)
string(JSON spec SET "${spec}" components schemas Batch "${batch}")
string(JSON spec SET "${spec}" components schemas Object "${object}")
file(WRITE ${OUT}.json "${spec}\n")
file(READ ${OUT}.json hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT}.tmp
  "/* generated from schemas/openapi.json (OpenAPI ${version}) by api/embed_openapi.cmake: do not edit */\n"
  "#include <stddef.h>\n"
  "extern const unsigned char bp_openapi_json[];\n"
  "extern const size_t bp_openapi_json_len;\n"
  "const unsigned char bp_openapi_json[] = {${bytes}};\n"
  "const size_t bp_openapi_json_len = sizeof(bp_openapi_json);\n")
file(RENAME ${OUT}.tmp ${OUT})
