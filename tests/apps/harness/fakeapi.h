/* fakeapi.h: the three enrichment APIs weft-etl calls (users, geo, fx), played by one
 * HTTP server in the test's process.
 *
 * Plain blocking sockets on a loopback port, a thread per keep-alive connection, answers
 * derived from the path: GET /users/ID, /geo/IP, /rates/CUR answer 200 with JSON naming
 * the key (usd_rate 1.25 for EUR, 2 otherwise); a key ending in "404" answers 404; the fx
 * key "XXX" answers 503. The switches below are atomics a test may flip from any thread
 * while the server runs; fake_start and fake_stop are the test's thread's. */
#ifndef APP_HARNESS_FAKEAPI_H
#define APP_HARNESS_FAKEAPI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

enum { USERS = 0, GEO, FX, NAPI };
enum { FAKE_MAX_CONNS = 256 };

struct fake_apis {
  int fd, port;
  char url[64]; /* "http://127.0.0.1:PORT": every API's base URL */
  pthread_t acceptor;
  atomic_bool stop;
  pthread_mutex_t mu;              /* guards conns, conn_fds, nconns */
  pthread_t conns[FAKE_MAX_CONNS]; /* connection threads, joined at stop */
  int conn_fds[FAKE_MAX_CONNS];    /* shut down at stop */
  int nconns;
  atomic_int hits[NAPI];       /* requests that reached each API */
  atomic_int down[NAPI];       /* 1: answer 503 */
  atomic_int fail_first[NAPI]; /* answer 503 while > 0, counting down */
  atomic_int delay_ms;         /* every answer waits this long */
};

extern struct fake_apis fake; /* one per test program: setup starts, teardown stops it */

/* Zero fake and start serving on a free loopback port. */
void fake_start(void);
/* Stop accepting, cut every connection and join its thread. */
void fake_stop(void);

#endif
