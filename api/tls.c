/* tls.c - builds the HTTPS context once at start; every loop thread's accept context shares it. */
#include "tls.h"

#include <stdio.h>

#include <h2o.h>
#include <h2o/http2.h>
#include <openssl/err.h>

static void last_ssl_error(char *err, size_t errlen, const char *what, const char *path)
{
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    snprintf(err, errlen, "%s %s: %s", what, path, buf);
}

SSL_CTX *bp_tls_context(const char *cert, const char *key, int http2, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "TLS: cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        last_ssl_error(err, errlen, "BP_TLS_CERT", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        last_ssl_error(err, errlen, "BP_TLS_KEY", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "BP_TLS_KEY %s does not match BP_TLS_CERT %s", key, cert);
        goto fail;
    }
    /* Without ALPN h2 a TLS client speaks HTTP/1.1, whose one body at a time the body budget counts. */
    static const h2o_iovec_t http1_only[] = {{H2O_STRLIT("http/1.1")}, {NULL}};
    h2o_ssl_register_alpn_protocols(ctx, http2 ? h2o_http2_alpn_protocols : http1_only);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
