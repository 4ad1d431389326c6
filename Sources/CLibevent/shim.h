// Thin shim over libevent's core and extra APIs. Macros that Swift cannot import are
// wrapped in prefixed static inline functions; nothing else lives here.
#ifndef TANDEM_CLIBEVENT_SHIM_H
#define TANDEM_CLIBEVENT_SHIM_H

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <errno.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

static inline struct event *tandem_evsignal_new(struct event_base *base, int signum,
                                                event_callback_fn cb, void *arg) {
    return evsignal_new(base, signum, cb, arg);
}

static inline struct event *tandem_evtimer_new(struct event_base *base, event_callback_fn cb,
                                               void *arg) {
    return evtimer_new(base, cb, arg);
}

static inline int tandem_evtimer_add(struct event *ev, long long micros) {
    struct timeval tv;
    tv.tv_sec = (time_t)(micros / 1000000);
    tv.tv_usec = (suseconds_t)(micros % 1000000);
    return evtimer_add(ev, &tv);
}

static inline int tandem_evtimer_del(struct event *ev) { return evtimer_del(ev); }

static inline int tandem_evtimer_pending(struct event *ev) {
    return evtimer_pending(ev, NULL);
}

static inline int tandem_errno(void) { return errno; }

static inline int tandem_socket_error(int fd) { return evutil_socket_geterror(fd); }

static inline void tandem_set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static inline short tandem_bev_event_eof(void) { return BEV_EVENT_EOF; }
static inline short tandem_bev_event_error(void) { return BEV_EVENT_ERROR; }
static inline short tandem_bev_event_timeout(void) { return BEV_EVENT_TIMEOUT; }
static inline short tandem_bev_event_connected(void) { return BEV_EVENT_CONNECTED; }
static inline short tandem_bev_event_reading(void) { return BEV_EVENT_READING; }
static inline short tandem_bev_event_writing(void) { return BEV_EVENT_WRITING; }

#endif
