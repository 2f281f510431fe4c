/* console.h - the web console's static files (api/console/), embedded in the binary at build time by
 * api/embed_console.cmake, and the routes that serve them: GET /console/ and /console/<file>. */
#ifndef BP_CONSOLE_H
#define BP_CONSOLE_H

#include <stddef.h>

/* One embedded file. Every member is static data of the generated api/console_files.c. */
typedef struct bp_console_file {
    const char *name;         /* "console.js": a bare name, [A-Za-z0-9._-] only */
    const char *content_type; /* "text/javascript; charset=utf-8" */
    const char *etag;         /* a strong ETag with its quotes: a hash of the content */
    const unsigned char *data;
    size_t len;
} bp_console_file_t;

/* The files, in name order (generated). */
extern const bp_console_file_t bp_console_files[];
extern const size_t bp_console_nfiles;

/* The file called name (len bytes, need not be NUL-terminated), or NULL. */
const bp_console_file_t *bp_console_find(const char *name, size_t len);

#endif
