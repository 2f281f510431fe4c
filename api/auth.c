/* auth.c - API key verification. The file holds hashes, never keys; a presented key is hashed and
 * compared with every stored hash in constant time, so timing tells nothing about which one matched. */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

typedef struct key_entry {
    unsigned char hash[32];
    int scopes;
    char name[64];
    char id[24]; /* "key:" + 16 hex digits of the hash */
} key_entry_t;

struct bp_auth {
    key_entry_t *keys;
    size_t n;
};

void bp_auth_hash_hex(const char *key, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

int bp_auth_parse_scopes(const char *s)
{
    int mask = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
        if (strcmp(w, "read") == 0)
            mask |= BP_SCOPE_READ;
        else if (strcmp(w, "write") == 0)
            mask |= BP_SCOPE_WRITE;
        else if (strcmp(w, "delete") == 0)
            mask |= BP_SCOPE_DELETE;
        else
            return -1;
    }
    return mask;
}

static int unhex(const char *hex, unsigned char out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned int b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1)
            return -1;
        out[i] = (unsigned char)b;
    }
    return hex[64] == '\0' ? 0 : -1;
}

bp_auth_t *bp_auth_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "BP_API_KEYS_FILE %s: %s", path, strerror(errno));
        return NULL;
    }
    bp_auth_t *auth = calloc(1, sizeof(*auth));
    char line[512];
    int lineno = 0;
    while (auth != NULL && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *hash = strtok(line, " \t\r\n");
        if (hash == NULL || hash[0] == '#')
            continue;
        char *scopes = strtok(NULL, " \t\r\n");
        char *name = strtok(NULL, " \t\r\n");
        key_entry_t e = {0};
        int mask = scopes != NULL ? bp_auth_parse_scopes(scopes) : -1;
        if (strlen(hash) != 64 || unhex(hash, e.hash) != 0 || mask <= 0) {
            snprintf(err, errlen, "BP_API_KEYS_FILE %s line %d: expected \"<sha256 hex> <read,write,delete> [name]\"",
                     path, lineno);
            bp_auth_free(auth);
            fclose(f);
            return NULL;
        }
        e.scopes = mask;
        snprintf(e.name, sizeof(e.name), "%s", name != NULL ? name : "key");
        /* the start of the hash (public: it is in the file) tells keys apart where names may not */
        snprintf(e.id, sizeof(e.id), "key:%.16s", hash);
        key_entry_t *nk = realloc(auth->keys, (auth->n + 1) * sizeof(*nk));
        if (nk == NULL) {
            bp_auth_free(auth);
            auth = NULL;
            break;
        }
        auth->keys = nk;
        auth->keys[auth->n++] = e;
    }
    fclose(f);
    if (auth == NULL)
        snprintf(err, errlen, "out of memory");
    else if (auth->n == 0) {
        snprintf(err, errlen, "BP_API_KEYS_FILE %s holds no key", path);
        bp_auth_free(auth);
        return NULL;
    }
    return auth;
}

void bp_auth_free(bp_auth_t *auth)
{
    if (auth == NULL)
        return;
    OPENSSL_cleanse(auth->keys, auth->n * sizeof(*auth->keys));
    free(auth->keys);
    free(auth);
}

/* The presented key, from Authorization: Bearer or X-API-Key; 0 if none. */
static int presented_key(h2o_req_t *req, h2o_iovec_t *key)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (v.len > 7 && h2o_lcstris(v.base, 7, H2O_STRLIT("bearer "))) {
            *key = h2o_iovec_init(v.base + 7, v.len - 7);
            return 1;
        }
    }
    i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-api-key"), -1);
    if (i >= 0) {
        *key = req->headers.entries[i].value;
        return 1;
    }
    return 0;
}

int bp_auth_check(const bp_auth_t *auth, h2o_req_t *req, int scope, const char **name, const char **id)
{
    h2o_iovec_t key;
    if (!presented_key(req, &key) || key.len == 0 || key.len > 1024)
        return 401;
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(key.base, key.len, md, &mdlen, EVP_sha256(), NULL);
    const key_entry_t *found = NULL;
    for (size_t i = 0; i < auth->n; i++) { /* no early exit: every entry is compared */
        int same = CRYPTO_memcmp(md, auth->keys[i].hash, 32) == 0;
        if (same && found == NULL)
            found = &auth->keys[i];
    }
    if (found == NULL)
        return 401;
    *name = found->name;
    *id = found->id;
    return (found->scopes & scope) ? 0 : 403;
}
