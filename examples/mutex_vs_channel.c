/* mutex_vs_channel.c: one bank account, kept correct two ways.
 *
 *   examples/mutex_vs_channel [clients [ops]]       defaults: 8 clients, 2000 ops each
 *
 * CLIENTS coroutines (on every scheduler thread) each deposit 2 and withdraw 1, ops times,
 * so the final balance must be clients * ops. Both versions below get it right:
 *
 * 1. Share memory, guarded by a lock (Go: sync.Mutex). The balance lives in a struct next
 *    to a weft_mutex, and every access takes it. A contended weft_mutex parks the
 *    coroutine, never the thread.
 * 2. Share memory by communicating (Go: a goroutine owning the state). One "teller"
 *    coroutine owns the balance; nobody else touches it. Clients send requests on a
 *    channel and wait for the reply on their own channel.
 *
 * Which to use? A mutex when the state is small and every critical section is a few
 * loads and stores: it is the cheaper one (see the timings). An owning coroutine when the
 * state has a life of its own (timers, batching, talking to other services while callers
 * wait), when a request must be able to wait or be cancelled (select on the reply and a
 * context), or when ownership passes along with the data, as in a pipeline. Never hold a
 * weft_mutex across a long park: every other client waits behind it. */
#include <stdio.h>
#include <stdlib.h>

#include <weft/weft.h>

struct run {
  int clients, ops;
  weft_mutex mu;   /* guards balance (version 1) */
  long balance;    /* version 1: guarded by mu */
  weft_chan *bank; /* version 2: struct request, clients -> teller */
  weft_wg wg;      /* the clients of the version being run */
  weft_wg teller;  /* version 2: the teller */
};

struct request {
  long amount;      /* added to the balance (negative: a withdrawal) */
  weft_chan *reply; /* long: the balance after it; the client's own channel */
};

static void client_mutex(void *arg)
{
  struct run *r = arg;
  for (int i = 0; i < r->ops; i++) {
    weft_mutex_lock(&r->mu);
    r->balance += 2; /* only a few instructions under the lock */
    weft_mutex_unlock(&r->mu);
    weft_mutex_lock(&r->mu);
    r->balance -= 1;
    weft_mutex_unlock(&r->mu);
  }
  weft_wg_done(&r->wg);
}

/* The only coroutine that reads or writes balance: no lock needed. Ends when the bank
 * channel is closed (after every client has finished). */
static void teller(void *arg)
{
  struct run *r = arg;
  long balance = 0;
  struct request req;
  while (weft_chan_recv(r->bank, &req, WEFT_NO_DEADLINE) == 0) {
    balance += req.amount;
    weft_chan_send(req.reply, &balance, WEFT_NO_DEADLINE);
  }
  r->balance = balance; /* the wait group orders this before main reads it */
  weft_wg_done(&r->teller);
}

/* Ask the teller to add amount; returns the balance after it. */
static long transact(struct run *r, weft_chan *reply, long amount)
{
  struct request req = {amount, reply};
  long after = 0;
  weft_chan_send(r->bank, &req, WEFT_NO_DEADLINE);
  weft_chan_recv(reply, &after, WEFT_NO_DEADLINE);
  return after;
}

static void client_channel(void *arg)
{
  struct run *r = arg;
  weft_chan *reply = weft_chan_new(sizeof(long), 1);
  for (int i = 0; i < r->ops && reply; i++) {
    transact(r, reply, 2);
    transact(r, reply, -1);
  }
  weft_chan_release(reply);
  weft_wg_done(&r->wg);
}

/* Run clients copies of fn and wait for them; returns the elapsed ms. */
static double run_clients(struct run *r, void (*fn)(void *))
{
  int64_t t0 = weft_now();
  weft_wg_add(&r->wg, r->clients);
  for (int i = 0; i < r->clients; i++)
    weft_go(fn, r);
  weft_wg_wait(&r->wg);
  return (double)(weft_now() - t0) / 1e6;
}

static int bank_main(void *arg)
{
  struct run *r = arg;
  long want = (long)r->clients * r->ops;
  printf("%d clients x %d ops on %d threads, want balance %ld\n", r->clients, r->ops,
         weft_procs(), want);

  double ms = run_clients(r, client_mutex);
  long by_mutex = r->balance;
  printf("mutex:   balance %ld (want %ld) in %.1f ms\n", by_mutex, want, ms);

  r->bank = weft_chan_new(sizeof(struct request), 0);
  weft_wg_add(&r->teller, 1);
  weft_go(teller, r);
  ms = run_clients(r, client_channel);
  weft_chan_close(r->bank); /* no more clients: the teller returns */
  weft_wg_wait(&r->teller);
  weft_chan_release(r->bank);
  printf("channel: balance %ld (want %ld) in %.1f ms\n", r->balance, want, ms);
  return by_mutex == want && r->balance == want ? 0 : 1;
}

int main(int argc, char **argv)
{
  struct run r = {.clients = argc > 1 ? atoi(argv[1]) : 8,
                  .ops = argc > 2 ? atoi(argv[2]) : 2000,
                  .mu = WEFT_MUTEX_INIT,
                  .wg = WEFT_WG_INIT,
                  .teller = WEFT_WG_INIT};
  if (r.clients < 1 || r.ops < 1) {
    fprintf(stderr, "usage: %s [clients [ops]]\n", argv[0]);
    return 2;
  }
  int rc = weft_main(bank_main, &r);
  return rc < 0 ? 2 : rc;
}
