// Thin shim over libevent's OpenSSL bufferevents and the OpenSSL calls Tandem needs.
#ifndef TANDEM_CLIBEVENT_OPENSSL_SHIM_H
#define TANDEM_CLIBEVENT_OPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <event2/bufferevent_ssl.h>

static inline long tandem_ssl_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}

#endif

// Additions for TandemNet's TLS.swift and Crypto.swift (peer transport). Macros wrapped as prefixed functions.
#ifndef TANDEM_CLIBEVENT_OPENSSL_SHIM_TRANSPORT_H
#define TANDEM_CLIBEVENT_OPENSSL_SHIM_TRANSPORT_H

#include <openssl/x509v3.h>
#include <openssl/crypto.h>

static inline int tandem_ssl_ctx_set_min_tls12(SSL_CTX *ctx) {
    return (int)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}

static inline void tandem_ssl_ctx_require_peer_certificate(SSL_CTX *ctx) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
}

static inline int tandem_ssl_filetype_pem(void) { return SSL_FILETYPE_PEM; }
static inline int tandem_bufferevent_ssl_connecting(void) { return BUFFEREVENT_SSL_CONNECTING; }
static inline int tandem_bufferevent_ssl_accepting(void) { return BUFFEREVENT_SSL_ACCEPTING; }
static inline long tandem_x509_v_ok(void) { return X509_V_OK; }

/// 1 when the peer's certificate names `name`: a DNS subjectAltName (or the common name when there is no DNS
/// SAN), or, when `name` is an IP address literal, an IP subjectAltName.
static inline int tandem_ssl_peer_certificate_matches(SSL *ssl, const char *name, size_t length) {
    X509 *certificate = SSL_get1_peer_certificate(ssl);
    if (certificate == NULL) return 0;
    int result = X509_check_host(certificate, name, length, 0, NULL);
    if (result != 1) result = X509_check_ip_asc(certificate, name, 0);
    X509_free(certificate);
    return result == 1;
}

/// Writes the peer certificate's subject as one line into `buffer`; returns 0 when there is no certificate.
static inline int tandem_ssl_peer_subject(SSL *ssl, char *buffer, int capacity) {
    X509 *certificate = SSL_get1_peer_certificate(ssl);
    if (certificate == NULL) return 0;
    X509_NAME_oneline(X509_get_subject_name(certificate), buffer, capacity);
    X509_free(certificate);
    return 1;
}

/// 1 once the peer has sent this side any TLS bytes (a failure then is a TLS failure, not a refused dial).
static inline int tandem_ssl_peer_sent_bytes(const SSL *ssl) {
    BIO *bio = SSL_get_rbio(ssl);
    return bio != NULL && BIO_number_read(bio) > 0;
}

static inline int tandem_hmac_sha256(const void *key, int keyLength, const unsigned char *data, size_t dataLength,
                                     unsigned char *out32) {
    unsigned int length = 0;
    return HMAC(EVP_sha256(), key, keyLength, data, dataLength, out32, &length) != NULL && length == 32;
}

#endif
