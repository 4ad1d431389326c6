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
