/* auth.h - API keys with scopes: keys are stored only as SHA-256 hashes (BP_API_KEYS_FILE), presented
 * as "Authorization: Bearer <key>" or "X-API-Key: <key>", and compared in constant time. */
#ifndef BP_AUTH_H
#define BP_AUTH_H

#include <stddef.h>

#include <h2o.h>

#include "bp_error.h"

enum { BP_SCOPE_READ = 1, BP_SCOPE_WRITE = 2, BP_SCOPE_DELETE = 4 };

typedef struct bp_auth bp_auth_t;

/* Load the keys file: one key per line, "<sha256 hex of the key> <scopes> [name]", scopes a comma list
 * of read, write, delete; '#' starts a comment. NULL with err (naming the line) on a bad file.
 * Free with bp_auth_free. */
bp_auth_t *bp_auth_load(const char *path, char *err, size_t errlen);

void bp_auth_free(bp_auth_t *auth);

/* Check req for a key with scope. Returns 0 and sets *name (the key's name) and *id (the key's own
 * identity for rate limits, "key:" and the start of its hash: two keys never share it, even with one
 * name), both borrowed from auth, when allowed; 401 when no key or an unknown key was presented; 403
 * when the key lacks the scope. */
int bp_auth_check(const bp_auth_t *auth, h2o_req_t *req, int scope, const char **name, const char **id) BP_MUST_CHECK;

/* Parse "read,write" into a scope mask; -1 on an unknown word. */
int bp_auth_parse_scopes(const char *s);

/* Lowercase hex SHA-256 of key (out must hold 65 bytes). */
void bp_auth_hash_hex(const char *key, size_t len, char out[65]);

#endif
