/* tls.h - the OpenSSL context of the HTTPS listener (h2o links OpenSSL). */
#ifndef BP_TLS_H
#define BP_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* A server context with cert (PEM chain) and key, TLS 1.2 or newer; ALPN offers h2 and http/1.1 when
 * http2 is not 0, else http/1.1 only. NULL with err naming the file on failure. Free with SSL_CTX_free. */
SSL_CTX *bp_tls_context(const char *cert, const char *key, int http2, char *err, size_t errlen);

#endif
