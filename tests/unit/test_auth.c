/* test_auth.c - api/auth.c: the keys file (hashes, scopes, names), scope words, and which answer a
 * presented key gets (0, 401 or 403). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"

/* SHA-256 of "secret-r" and of "secret-rw", as bp_auth_hash_hex writes them */
static char hash_r[65], hash_rw[65];

/* A keys file with text in a fresh directory; its path in path (freed by remove_keys). */
static void write_keys(char *path, size_t len, const char *text)
{
    char dir[] = "/tmp/bp-test-auth-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(path, len, "%s/keys", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_keys(const char *path)
{
    unlink(path);
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
}

static bp_auth_t *load(const char *text, char *err, size_t errlen)
{
    char path[256];
    write_keys(path, sizeof(path), text);
    bp_auth_t *auth = bp_auth_load(path, err, errlen);
    remove_keys(path);
    return auth;
}

static void test_hash_hex(void **state)
{
    (void)state;
    char out[65];
    bp_auth_hash_hex("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    bp_auth_hash_hex("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_parse_scopes(void **state)
{
    (void)state;
    assert_int_equal(bp_auth_parse_scopes("read"), BP_SCOPE_READ);
    assert_int_equal(bp_auth_parse_scopes("read,write"), BP_SCOPE_READ | BP_SCOPE_WRITE);
    assert_int_equal(bp_auth_parse_scopes("delete,read,write"),
                     BP_SCOPE_READ | BP_SCOPE_WRITE | BP_SCOPE_DELETE);
    assert_int_equal(bp_auth_parse_scopes("read,,write"), BP_SCOPE_READ | BP_SCOPE_WRITE);
    assert_int_equal(bp_auth_parse_scopes("read,admin"), -1);
    assert_int_equal(bp_auth_parse_scopes("Read"), -1); /* words are lowercase */
    assert_int_equal(bp_auth_parse_scopes(""), 0);
}

static void test_load_refuses_bad_files(void **state)
{
    (void)state;
    char err[512], text[512];
    assert_null(load("# only a comment\n\n", err, sizeof(err)));
    assert_non_null(strstr(err, "holds no key"));
    snprintf(text, sizeof(text), "%s read\nnot-a-hash read\n", hash_r);
    assert_null(load(text, err, sizeof(err)));
    assert_non_null(strstr(err, "line 2"));
    snprintf(text, sizeof(text), "%s admin x\n", hash_r);
    assert_null(load(text, err, sizeof(err)));
    assert_non_null(strstr(err, "line 1"));
    snprintf(text, sizeof(text), "%s\n", hash_r); /* no scopes */
    assert_null(load(text, err, sizeof(err)));
    assert_non_null(strstr(err, "line 1"));
    assert_null(bp_auth_load("/nonexistent/bp-keys", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/bp-keys"));
    bp_auth_free(NULL);
}

/* A request carrying header (lowercase name) = value, or none when name is NULL. */
static void request_with(h2o_req_t *req, const char *name, const char *value)
{
    memset(req, 0, sizeof(*req));
    h2o_mem_init_pool(&req->pool);
    if (name != NULL)
        h2o_add_header_by_str(&req->pool, &req->headers, name, strlen(name), 1, NULL, value, strlen(value));
}

static int check(const bp_auth_t *auth, const char *header, const char *value, int scope, const char **name,
                 const char **id)
{
    h2o_req_t req;
    request_with(&req, header, value);
    int rc = bp_auth_check(auth, &req, scope, name, id);
    h2o_mem_clear_pool(&req.pool);
    return rc;
}

static void test_check_scopes_and_keys(void **state)
{
    (void)state;
    char err[512], text[512];
    snprintf(text, sizeof(text), "# keys\n%s read reader\n%s\tread,write\n", hash_r, hash_rw);
    bp_auth_t *auth = load(text, err, sizeof(err));
    assert_non_null(auth);
    const char *name = NULL, *id = NULL;

    assert_int_equal(check(auth, "authorization", "Bearer secret-r", BP_SCOPE_READ, &name, &id), 0);
    assert_string_equal(name, "reader");
    char want_id[32];
    snprintf(want_id, sizeof(want_id), "key:%.16s", hash_r);
    assert_string_equal(id, want_id);
    assert_int_equal(check(auth, "authorization", "bearer secret-r", BP_SCOPE_READ, &name, &id), 0);
    assert_int_equal(check(auth, "x-api-key", "secret-r", BP_SCOPE_READ, &name, &id), 0);
    assert_int_equal(check(auth, "x-api-key", "secret-r", BP_SCOPE_WRITE, &name, &id), 403);
    assert_int_equal(check(auth, "x-api-key", "secret-r", BP_SCOPE_DELETE, &name, &id), 403);

    assert_int_equal(check(auth, "x-api-key", "secret-rw", BP_SCOPE_WRITE, &name, &id), 0);
    assert_string_equal(name, "key"); /* no name in the file */
    assert_int_equal(check(auth, "x-api-key", "secret-rw", BP_SCOPE_DELETE, &name, &id), 403);

    assert_int_equal(check(auth, NULL, NULL, BP_SCOPE_READ, &name, &id), 401);
    assert_int_equal(check(auth, "x-api-key", "secret-x", BP_SCOPE_READ, &name, &id), 401);
    assert_int_equal(check(auth, "x-api-key", "", BP_SCOPE_READ, &name, &id), 401);
    assert_int_equal(check(auth, "authorization", "Basic secret-r", BP_SCOPE_READ, &name, &id), 401);
    assert_int_equal(check(auth, "authorization", "Bearer secret-r ", BP_SCOPE_READ, &name, &id), 401);
    bp_auth_free(auth);
}

static int setup(void **state)
{
    (void)state;
    bp_auth_hash_hex("secret-r", strlen("secret-r"), hash_r);
    bp_auth_hash_hex("secret-rw", strlen("secret-rw"), hash_rw);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_hex),
        cmocka_unit_test(test_parse_scopes),
        cmocka_unit_test(test_load_refuses_bad_files),
        cmocka_unit_test(test_check_scopes_and_keys),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
