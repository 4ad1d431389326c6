// Thin shim over libevent's pthreads support: call evthread_use_pthreads() before any loop exists.
#ifndef TANDEM_CLIBEVENT_PTHREADS_SHIM_H
#define TANDEM_CLIBEVENT_PTHREADS_SHIM_H
#include <event2/thread.h>
#endif
