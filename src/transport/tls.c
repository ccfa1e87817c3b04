/* SPDX-License-Identifier: Apache-2.0 */
#include "transport/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

/* Mozilla's "intermediate" TLS 1.2 suites: forward secret, AEAD only.
 * TLS 1.3 suites are OpenSSL's defaults and need no list. */
#define XR_DEFAULT_CIPHERS \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static SSL_CTX *tls_fail(SSL_CTX *ctx, char *err, size_t errlen, const char *what,
                         const char *file)
{
    char ossl[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, ossl, sizeof ossl);
    ERR_clear_error();
    snprintf(err, errlen, "%s %s%s%s", what, file ? file : "", ossl[0] ? ": " : "", ossl);
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *xr_tls_ctx_new(const char *cert, const char *key, const char *ciphers,
                        char *err, size_t errlen)
{
    /* Say which file and why before OpenSSL's terser words do. */
    const char *files[2] = {cert, key};
    for (int k = 0; k < 2; k++)
        if (access(files[k], R_OK) != 0) {
            snprintf(err, errlen, "cannot read TLS %s %s: %s", k ? "key" : "certificate",
                     files[k], strerror(errno));
            return NULL;
        }

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return tls_fail(NULL, err, errlen, "cannot create TLS context", NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE |
                             /* a client that drops TCP without close_notify
                              * is an EOF, not an error worth a log line */
                             SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Idle connections hold no 34 KiB read/write buffers: the largest part
     * of a wss:// connection's memory otherwise. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* One read() takes every record the kernel holds, not a 5-byte header
     * and then its body: a pipelining client costs one syscall per batch. */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* No server-side session cache: TLS 1.3 resumes with stateless
     * tickets, and a cached TLS 1.2 session per client would be memory
     * held past the connection. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_cipher_list(ctx, ciphers ? ciphers : XR_DEFAULT_CIPHERS) != 1)
        return tls_fail(ctx, err, errlen, "no usable cipher in --tls-ciphers", ciphers);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return tls_fail(ctx, err, errlen, "cannot load TLS certificate", cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return tls_fail(ctx, err, errlen, "cannot load TLS key", key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return tls_fail(ctx, err, errlen, "TLS key does not match the certificate:", key);
    return ctx;
}
