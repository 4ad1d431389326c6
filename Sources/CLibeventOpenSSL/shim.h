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

// Additions for TandemNet's AEAD.swift (sealed peer frames in cluster-secret mode): HKDF-SHA256 and AES-256-GCM
// through EVP. Each returns 1 on success and 0 on any failure, as OpenSSL's own calls do.
#ifndef TANDEM_CLIBEVENT_OPENSSL_SHIM_AEAD_H
#define TANDEM_CLIBEVENT_OPENSSL_SHIM_AEAD_H

#include <openssl/kdf.h>

/// HKDF-SHA256 (RFC 5869, extract then expand) of `key` with `salt` and `info` into `outLength` bytes of `out`.
static inline int tandem_hkdf_sha256(const unsigned char *key, size_t keyLength, const unsigned char *salt,
                                     size_t saltLength, const unsigned char *info, size_t infoLength,
                                     unsigned char *out, size_t outLength) {
    EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    if (context == NULL) return 0;
    size_t length = outLength;
    int ok = EVP_PKEY_derive_init(context) == 1
        && EVP_PKEY_CTX_set_hkdf_md(context, EVP_sha256()) == 1
        && EVP_PKEY_CTX_set1_hkdf_salt(context, salt, (int)saltLength) == 1
        && EVP_PKEY_CTX_set1_hkdf_key(context, key, (int)keyLength) == 1
        && EVP_PKEY_CTX_add1_hkdf_info(context, info, (int)infoLength) == 1
        && EVP_PKEY_derive(context, out, &length) == 1
        && length == outLength;
    EVP_PKEY_CTX_free(context);
    return ok;
}

/// A cipher context for AES-256-GCM under `key32` with 12-byte nonces; `encrypt` is 1 to seal, 0 to open.
/// The key schedule is computed once here; each message then only sets its nonce. NULL on failure.
static inline EVP_CIPHER_CTX *tandem_aes256gcm_new(const unsigned char *key32, int encrypt) {
    EVP_CIPHER_CTX *context = EVP_CIPHER_CTX_new();
    if (context == NULL) return NULL;
    if (EVP_CipherInit_ex(context, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) != 1
        || EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1
        || EVP_CipherInit_ex(context, NULL, NULL, key32, NULL, encrypt) != 1) {
        EVP_CIPHER_CTX_free(context);
        return NULL;
    }
    return context;
}

/// Starts one message under `nonce12`, authenticating (not encrypting) `aadLength` bytes of `aad`.
static inline int tandem_aes256gcm_begin(EVP_CIPHER_CTX *context, const unsigned char *nonce12,
                                         const unsigned char *aad, int aadLength) {
    int written = 0;
    if (EVP_CipherInit_ex(context, NULL, NULL, NULL, nonce12, -1) != 1) return 0;
    return aadLength == 0 || EVP_CipherUpdate(context, NULL, &written, aad, aadLength) == 1;
}

/// Encrypts or decrypts `length` bytes of `input` into `output` (the same length: GCM is a stream mode).
static inline int tandem_aes256gcm_update(EVP_CIPHER_CTX *context, const unsigned char *input, unsigned char *output,
                                          int length) {
    int written = 0;
    return EVP_CipherUpdate(context, output, &written, input, length) == 1 && written == length;
}

/// Ends a sealed message and writes its 16-byte tag.
static inline int tandem_aes256gcm_finish_seal(EVP_CIPHER_CTX *context, unsigned char *tag16) {
    unsigned char unused[16];
    int written = 0;
    return EVP_CipherFinal_ex(context, unused, &written) == 1 && written == 0
        && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, 16, tag16) == 1;
}

/// Seals one whole message in one call (the common case of a small frame): `prefixLength` bytes of `prefix` then
/// `length` bytes of `input` are encrypted into `output` (which holds both), and the tag goes to `tag16`.
static inline int tandem_aes256gcm_seal_message(EVP_CIPHER_CTX *context, const unsigned char *nonce12,
                                                const unsigned char *aad, int aadLength, const unsigned char *prefix,
                                                int prefixLength, const unsigned char *input, int length,
                                                unsigned char *output, unsigned char *tag16) {
    return tandem_aes256gcm_begin(context, nonce12, aad, aadLength)
        && (prefixLength == 0 || tandem_aes256gcm_update(context, prefix, output, prefixLength))
        && (length == 0 || tandem_aes256gcm_update(context, input, output + prefixLength, length))
        && tandem_aes256gcm_finish_seal(context, tag16);
}

/// Ends an opened message: 1 only when `tag16` authenticates the nonce, the associated data and the ciphertext.
static inline int tandem_aes256gcm_finish_open(EVP_CIPHER_CTX *context, const unsigned char *tag16) {
    unsigned char unused[16];
    int written = 0;
    return EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag16) == 1
        && EVP_CipherFinal_ex(context, unused, &written) == 1 && written == 0;
}

/// Opens one whole message in one call: 1 only when it authenticates; `output` then holds the `length` bytes of
/// plaintext (garbage otherwise, to be discarded unread).
static inline int tandem_aes256gcm_open_message(EVP_CIPHER_CTX *context, const unsigned char *nonce12,
                                                const unsigned char *aad, int aadLength, const unsigned char *input,
                                                int length, const unsigned char *tag16, unsigned char *output) {
    return tandem_aes256gcm_begin(context, nonce12, aad, aadLength)
        && (length == 0 || tandem_aes256gcm_update(context, input, output, length))
        && tandem_aes256gcm_finish_open(context, tag16);
}

#endif
