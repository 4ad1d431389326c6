// Thin shim over libevent's core and extra APIs, and over the kernel timers (timerfd) repeating timers use. Macros
// that Swift cannot import are wrapped in prefixed static inline functions; nothing else lives here.
#ifndef TANDEM_CLIBEVENT_SHIM_H
#define TANDEM_CLIBEVENT_SHIM_H

// System headers first, before libevent's event-config.h defines _GNU_SOURCE, so that they are parsed with the
// same feature macros as Swift's Glibc module (otherwise fd_set is defined two different ways).
#include <sys/types.h>
#include <sys/time.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netdb.h>
#include <stdint.h>
#include <stdarg.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <time.h>
#include <errno.h>

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

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

static inline short tandem_bev_event_eof(void) { return BEV_EVENT_EOF; }
static inline short tandem_bev_event_error(void) { return BEV_EVENT_ERROR; }
static inline short tandem_bev_event_timeout(void) { return BEV_EVENT_TIMEOUT; }
static inline short tandem_bev_event_connected(void) { return BEV_EVENT_CONNECTED; }
static inline short tandem_bev_event_reading(void) { return BEV_EVENT_READING; }
static inline short tandem_bev_event_writing(void) { return BEV_EVENT_WRITING; }

// A kernel timer that expires on a fixed cadence: first at `firstMicros` (CLOCK_MONOTONIC, absolute), then every
// `intervalMicros`. Its file descriptor becomes readable at each expiry. Returns -1 with errno set on failure.
static inline int tandem_timerfd_open(void) {
    return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
}

static inline int tandem_timerfd_arm(int fd, long long firstMicros, long long intervalMicros) {
    struct itimerspec spec;
    spec.it_value.tv_sec = (time_t)(firstMicros / 1000000);
    spec.it_value.tv_nsec = (long)(firstMicros % 1000000) * 1000;
    spec.it_interval.tv_sec = (time_t)(intervalMicros / 1000000);
    spec.it_interval.tv_nsec = (long)(intervalMicros % 1000000) * 1000;
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

static inline int tandem_timerfd_disarm(int fd) {
    struct itimerspec spec = {{0, 0}, {0, 0}};
    return timerfd_settime(fd, 0, &spec, NULL);
}

/// Reads (and so resets) the count of expiries since the last read; 0 when there were none.
static inline unsigned long long tandem_timerfd_take(int fd) {
    unsigned long long expiries = 0;
    if (read(fd, &expiries, sizeof expiries) != (ssize_t)sizeof expiries) return 0;
    return expiries;
}

static inline short tandem_ev_read_persist(void) { return EV_READ | EV_PERSIST; }

#endif
