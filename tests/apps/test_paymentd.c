/* Contract tests of paymentd (apps/paymentd/, contract: shared/specs/paymentd.md).
 *
 * Each test starts the built paymentd as a child process on a free loopback port (picked
 * by binding port 0, then closed and passed to --listen), with its stdout and stderr in a
 * file under a fresh temporary directory, and waits until /healthz answers. The test
 * talks to it over plain blocking sockets, one connection per request (Connection:
 * close), from threads when requests must overlap; every socket has a receive timeout,
 * and every child is killed after a deadline, so a test is bounded in time. Responses
 * are parsed here (status line, headers, a Content-Length, chunked or read-to-close
 * body) and JSON bodies with jansson. The SQLite tests reopen the database with the
 * sqlite3 API once the child has exited and compare the ids it holds with the ids that
 * were answered 200. PAYMENTD_BIN runs the tests against another binary (the Go peer
 * passes all but the --auth-tokens test, a flag it does not implement). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sqlite3.h>

#include "coro_check.h"
#include "weft_test.h"

extern char **environ;

static char bin_path[4400];
static char tmp_dir[256];
enum { MAX_LIVE = 64 };
static pid_t live[MAX_LIVE]; /* children started by this test: killed in teardown */
static int nlive;

enum { MAX_ARGV = 48, MAX_IDS = 256 };

static int64_t mono_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

/* ---- the child ---- */

struct daemon {
  pid_t pid;
  int port;
  char log[512]; /* its stdout and stderr */
  int status;    /* wait status once reaped */
  bool reaped;
};

/* A free loopback port: bound to port 0, read back, closed. */
static int free_port(void)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* Spawn bin_path with args (NULL-terminated, after the program name) and env additions
 * (NULL-terminated "NAME=VALUE", or NULL), output to log. */
static pid_t spawn_child(const char *const *args, const char *const *env, const char *log)
{
  const char *argv[MAX_ARGV] = {bin_path};
  int n = 1;
  for (; args && args[n - 1]; n++) {
    assert_true(n < MAX_ARGV - 1);
    argv[n] = args[n - 1];
  }
  argv[n] = NULL;
  const char *envp[512];
  int e = 0;
  for (char **p = environ; *p && e < 400; p++)
    if (strncmp(*p, "PAYMENTD_", 9) != 0)
      envp[e++] = *p;
  for (int i = 0; env && env[i]; i++)
    envp[e++] = env[i];
  envp[e] = NULL;
  int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, defaults;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fd, 1);
  posix_spawn_file_actions_adddup2(&fa, fd, 2);
  posix_spawnattr_init(&attr);
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  if (posix_spawn(&pid, bin_path, &fa, &attr, (char **)argv, (char **)envp) != 0)
    pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(fd);
  assert_true(pid > 0);
  if (nlive < MAX_LIVE)
    live[nlive++] = pid;
  return pid;
}

static int connect_to(int port);

/* Under TSan, wake the child's poller with a connection: TSan runs a signal's handler
 * only when the thread that took it next enters an intercepted call, and weft's poller
 * waits in epoll_pwait2, which TSan does not intercept; the accept and read that follow
 * are. Whatever the connection gets is ignored (refused, once the listener is closed). */
static void poke(int port)
{
  static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  int fd = port > 0 ? connect_to(port) : -1;
  if (fd >= 0) {
    (void)!send(fd, req, sizeof req - 1, MSG_NOSIGNAL);
    close(fd);
  }
}

/* Wait at most timeout_ms for the child; true when it exited (status in d). */
static bool wait_exit(struct daemon *d, int timeout_ms)
{
  int64_t end = mono_ms() + timeout_ms, next_poke = mono_ms() + 100;
  while (!d->reaped) {
    pid_t r = waitpid(d->pid, &d->status, WNOHANG);
    if (r == d->pid) {
      d->reaped = true;
      break;
    }
    if (mono_ms() > end)
      return false;
    if (TSAN && mono_ms() > next_poke) {
      poke(d->port);
      next_poke = mono_ms() + 100;
    }
    sleep_ms(5);
  }
  return true;
}

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return strdup("");
  char *data = NULL;
  size_t cap = 0, len = 0;
  for (;;) {
    if (len + 4096 >= cap)
      data = realloc(data, cap = cap * 2 + 8192);
    size_t r = fread(data + len, 1, cap - len - 1, f);
    if (r == 0)
      break;
    len += r;
  }
  fclose(f);
  data[len] = '\0';
  return data;
}

static void dump_log(const struct daemon *d)
{
  char *s = slurp(d->log);
  size_t n = strlen(s);
  fprintf(stderr, "---- paymentd output (last 4000 bytes):\n%s\n----\n",
          n > 4000 ? s + n - 4000 : s);
  free(s);
}

/* A signal to the child. Under TSan, to the one thread waiting in epoll (found through
 * /proc/PID/task/TID/syscall), which wait_exit then wakes (see poke): TSan runs a handler
 * only when the thread the kernel picked enters an intercepted call, and weft's idle
 * threads park in a raw futex syscall, so a process-directed signal could wait a long
 * time. One thread, so that one signal stays one signal. */
static void send_signal(pid_t pid, int sig)
{
  if (TSAN) {
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *dd = opendir(dir);
    for (struct dirent *e; dd && (e = readdir(dd));) {
      if (e->d_name[0] == '.')
        continue;
      char path[400], line[64] = "";
      snprintf(path, sizeof path, "%s/%s/syscall", dir, e->d_name);
      FILE *f = fopen(path, "r");
      if (f) {
        if (!fgets(line, sizeof line, f))
          line[0] = '\0';
        fclose(f);
      }
      long nr = atol(line);
      if (nr == SYS_epoll_wait || nr == SYS_epoll_pwait || nr == SYS_epoll_pwait2) {
        syscall(SYS_tgkill, (int)pid, atoi(e->d_name), sig);
        closedir(dd);
        return;
      }
    }
    if (dd)
      closedir(dd);
  }
  kill(pid, sig);
}

static void kill_daemon(struct daemon *d)
{
  if (d->pid > 0 && !d->reaped) {
    kill(d->pid, SIGKILL);
    wait_exit(d, 10000);
  }
}

/* ---- HTTP over plain sockets ---- */

struct resp {
  int status; /* 0: no response */
  char *head; /* the status line and headers */
  char *body;
  size_t body_len;
  json_t *json; /* the body parsed, when it is JSON */
  int64_t ms;   /* from connect to the whole response */
};

static void resp_free(struct resp *r)
{
  free(r->head);
  free(r->body);
  json_decref(r->json);
  memset(r, 0, sizeof *r);
}

/* The value of header name in r (a static ring slot), or NULL. */
static const char *header(const struct resp *r, const char *name)
{
  static _Thread_local char ring[8][512];
  static _Thread_local int next;
  size_t nl = strlen(name);
  for (const char *p = r->head ? strstr(r->head, "\r\n") : NULL; p && p[2];
       p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1, *end = strstr(v, "\r\n");
      while (*v == ' ' || *v == '\t')
        v++;
      size_t len = end ? (size_t)(end - v) : strlen(v);
      char *slot = ring[next++ % 8];
      snprintf(slot, 512, "%.*s", (int)len, v);
      return slot;
    }
  }
  return NULL;
}

static int connect_to(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
  while (len > 0) {
    ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
    if (w <= 0)
      return; /* the server may answer and close before reading everything (413) */
    data += w, len -= (size_t)w;
  }
}

/* Decode a chunked body in place; its length. */
static size_t dechunk(char *b, size_t len)
{
  size_t in = 0, out = 0;
  while (in < len) {
    char *end;
    unsigned long n = strtoul(b + in, &end, 16);
    char *crlf = strstr(b + in, "\r\n");
    if (!crlf || n == 0)
      break;
    in = (size_t)(crlf - b) + 2;
    if (in + n > len)
      n = len - in;
    memmove(b + out, b + in, n);
    out += n, in += n + 2;
  }
  b[out] = '\0';
  return out;
}

/* Read one response from fd into r: up to the end of its body (Content-Length or
 * chunked), or to the close. */
static void read_resp(int fd, struct resp *r)
{
  size_t cap = 8192, len = 0;
  char *buf = malloc(cap);
  char *hend = NULL;
  long clen = -1;
  bool chunked = false;
  for (;;) {
    if (len + 4096 >= cap)
      buf = realloc(buf, cap *= 2);
    buf[len] = '\0';
    if (!hend && (hend = strstr(buf, "\r\n\r\n"))) {
      const char *cl = NULL, *te = NULL;
      for (char *p = strstr(buf, "\r\n"); p && p < hend; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, "Content-Length:", 15) == 0)
          cl = p + 17;
        if (strncasecmp(p + 2, "Transfer-Encoding:", 18) == 0)
          te = p + 20;
      }
      clen = cl ? atol(cl) : -1;
      chunked = te && strncasecmp(te + strspn(te, " "), "chunked", 7) == 0;
    }
    if (hend && clen >= 0 && len >= (size_t)(hend + 4 - buf) + (size_t)clen)
      break;
    if (hend && chunked && strstr(hend + 4, "\r\n0\r\n\r\n"))
      break;
    if (hend && chunked && strncmp(hend + 4, "0\r\n\r\n", 5) == 0)
      break;
    ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  if (!hend || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
    r->status = 0;
    free(buf);
    return;
  }
  size_t hlen = (size_t)(hend - buf) + 2;
  r->head = strndup(buf, hlen);
  size_t blen = len - hlen - 2;
  if (clen >= 0 && (size_t)clen < blen)
    blen = (size_t)clen;
  r->body = malloc(blen + 1);
  memcpy(r->body, hend + 4, blen);
  r->body[blen] = '\0';
  r->body_len = chunked ? dechunk(r->body, blen) : blen;
  r->json = json_loadb(r->body, r->body_len, 0, NULL);
  free(buf);
}

/* Send a request (extra: header lines, each ending in \r\n, or NULL) on fd. */
static void write_req(int fd, const char *method, const char *path, const char *extra,
                      const char *body, size_t body_len, bool close_conn)
{
  char head[2048];
  int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s", method, path,
                   close_conn ? "Connection: close\r\n" : "", extra ? extra : "");
  if (body)
    n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", body_len);
  n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
  send_all(fd, head, (size_t)n);
  if (body)
    send_all(fd, body, body_len);
}

/* One request on a new connection; r->status is 0 when nothing came back. */
static void http(int port, const char *method, const char *path, const char *extra,
                 const char *body, struct resp *r)
{
  memset(r, 0, sizeof *r);
  int64_t start = mono_ms();
  int fd = connect_to(port);
  if (fd < 0)
    return;
  write_req(fd, method, path, extra, body, body ? strlen(body) : 0, true);
  read_resp(fd, r);
  r->ms = mono_ms() - start;
  close(fd);
}

static const char JSON_CT[] = "Content-Type: application/json\r\n";

static void post(int port, const char *id, const char *body, struct resp *r)
{
  char path[256];
  snprintf(path, sizeof path, "/v1/payments/%s/confirm", id);
  http(port, "POST", path, JSON_CT, body, r);
}

static void start_daemon_env(struct daemon *d, const char *const *args, const char *const *env)
{
  static int runs;
  memset(d, 0, sizeof *d);
  d->port = free_port();
  snprintf(d->log, sizeof d->log, "%s/paymentd-%d.log", tmp_dir, runs++);
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", d->port);
  const char *argv[MAX_ARGV] = {"--listen", listen, "--debug-listen", ""};
  int n = 4;
  for (int i = 0; args && args[i]; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  d->pid = spawn_child(argv, env, d->log);
  int64_t end = mono_ms() + 20000;
  for (;;) {
    struct resp r;
    http(d->port, "GET", "/healthz", NULL, NULL, &r);
    int st = r.status;
    resp_free(&r);
    if (st == 200)
      return;
    if (wait_exit(d, 0) || mono_ms() > end) {
      kill_daemon(d);
      dump_log(d);
      fail_msg("paymentd did not come up (status %d)", d->status);
    }
    sleep_ms(20);
  }
}

static void start_daemon(struct daemon *d, const char *const *args)
{
  start_daemon_env(d, args, NULL);
}

/* SIGTERM, and the exit status (fails after timeout_ms). */
static int stop_daemon(struct daemon *d, int timeout_ms)
{
  send_signal(d->pid, SIGTERM);
  if (!wait_exit(d, timeout_ms)) {
    kill_daemon(d);
    dump_log(d);
    fail_msg("paymentd did not exit within %d ms of SIGTERM", timeout_ms);
  }
  return d->status;
}

/* ---- checks ---- */

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Whether r is an error of the contract: status, JSON Content-Type, and the body exactly
 * {"error": code, "message": non-empty text}; prints what differs when not. */
static bool is_error(const struct resp *r, int status, const char *code, const char *what)
{
  json_t *e = json_object_get(r->json, "error"), *m = json_object_get(r->json, "message");
  if (r->status != status || !json_is_object(r->json) || json_object_size(r->json) != 2 ||
      !json_is_string(e) || strcmp(json_string_value(e), code) != 0 || !json_is_string(m) ||
      !*json_string_value(m)) {
    fprintf(stderr, "%s: want %d {\"error\":\"%s\",\"message\":...}, got %d %s\n", what, status,
            code, r->status, r->body ? r->body : "(no body)");
    return false;
  }
  const char *ct = header(r, "Content-Type");
  if (!ct || strncmp(ct, "application/json", 16) != 0) {
    fprintf(stderr, "%s: Content-Type %s\n", what, ct ? ct : "(none)");
    return false;
  }
  return true;
}

static void expect_error(const struct resp *r, int status, const char *code, const char *what)
{
  if (!is_error(r, status, code, what))
    fail_msg("%s: not the expected error", what);
}

static const char *jstr(const struct resp *r, const char *key)
{
  json_t *v = json_object_get(r->json, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_int_t jint(const struct resp *r, const char *key)
{
  json_t *v = json_object_get(r->json, key);
  if (!json_is_integer(v))
    fail_msg("%s is not an integer in %s", key, r->body ? r->body : "(none)");
  return json_integer_value(v);
}

/* RFC 3339 UTC with fractional seconds: YYYY-MM-DDTHH:MM:SS.f+Z. */
static bool is_rfc3339_frac_utc(const char *s)
{
  const char *shape = "dddd-dd-ddTdd:dd:dd.";
  for (int i = 0; shape[i]; i++, s++) {
    if (shape[i] == 'd' ? (*s < '0' || *s > '9') : *s != shape[i])
      return false;
  }
  if (*s < '0' || *s > '9')
    return false;
  while (*s >= '0' && *s <= '9')
    s++;
  return strcmp(s, "Z") == 0;
}

/* r is a 200 confirmation of the record given. */
static void expect_record(const struct resp *r, const char *id, long long amount,
                          const char *currency, const char *account)
{
  if (r->status != 200 || !json_is_object(r->json))
    fail_msg("%s: want 200 and a record, got %d %s", id, r->status, r->body ? r->body : "");
  assert_string_equal(jstr(r, "id"), id);
  assert_string_equal(jstr(r, "status"), "confirmed");
  assert_int_equal(jint(r, "amount_cents"), amount);
  assert_string_equal(jstr(r, "currency"), currency);
  assert_string_equal(jstr(r, "account"), account);
  const char *at = jstr(r, "confirmed_at");
  if (!at || !is_rfc3339_frac_utc(at))
    fail_msg("confirmed_at %s is not RFC 3339 UTC with fractional seconds", at ? at : "null");
  const char *ct = header(r, "Content-Type");
  assert_non_null(ct);
  assert_memory_equal(ct, "application/json", 16);
}

static bool find_bin(void)
{
  const char *env = getenv("PAYMENTD_BIN");
  if (env && *env) {
    snprintf(bin_path, sizeof bin_path, "%s", env);
    return access(bin_path, X_OK) == 0;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    return false;
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash)
    *slash = '\0';
  snprintf(bin_path, sizeof bin_path, "%s/../apps/paymentd/paymentd", self);
  return access(bin_path, X_OK) == 0;
}

static int setup(void **state)
{
  (void)state;
  if (!find_bin()) {
    fprintf(stderr, "paymentd not built (%s): skipped\n", bin_path);
    skip();
  }
  const char *base = getenv("TMPDIR");
  snprintf(tmp_dir, sizeof tmp_dir, "%s/weft-paymentd-XXXXXX", base && *base ? base : "/tmp");
  assert_non_null(mkdtemp(tmp_dir));
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  for (int i = 0; i < nlive; i++) /* after a failed check: no child outlives its test */
    if (waitpid(live[i], NULL, WNOHANG) == 0) {
      kill(live[i], SIGKILL);
      waitpid(live[i], NULL, 0);
    }
  nlive = 0;
  DIR *d = opendir(tmp_dir);
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.')
      continue;
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
    unlink(path);
  }
  if (d)
    closedir(d);
  rmdir(tmp_dir);
  return 0;
}

/* ---- concurrent requests ---- */

struct job {
  int port;
  char id[80];
  char body[256];
  int delay_ms; /* before connecting */
  struct resp r;
  atomic_int *done; /* incremented once answered (or failed) */
};

static void *job_run(void *arg)
{
  struct job *j = arg;
  if (j->delay_ms)
    sleep_ms(j->delay_ms);
  post(j->port, j->id, j->body, &j->r);
  if (j->done)
    atomic_fetch_add(j->done, 1);
  return NULL;
}

static void jobs_start(struct job *jobs, pthread_t *th, int n)
{
  for (int i = 0; i < n; i++)
    assert_int_equal(pthread_create(&th[i], NULL, job_run, &jobs[i]), 0);
}

static void jobs_join(pthread_t *th, int n)
{
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
}

static void body_for(char *out, size_t cap, long long amount, const char *cur, const char *acct)
{
  snprintf(out, cap, "{\"amount_cents\":%lld,\"currency\":\"%s\",\"account\":\"%s\"}", amount,
           cur, acct);
}

/* ---- the tests ---- */

static const char GOOD[] =
    "{\"amount_cents\":1250,\"currency\":\"EUR\",\"account\":\"acct-1\"}";

/* 200 with the record, replay, conflict, GET of a record and of an unknown id. */
static void test_confirm_replay_conflict(void **state)
{
  struct daemon d;
  struct resp r, r2;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "2"));
  post(d.port, "pay_1-A", GOOD, &r);
  expect_record(&r, "pay_1-A", 1250, "EUR", "acct-1");
  assert_int_equal(json_object_size(r.json), 6);
  assert_null(header(&r, "Idempotent-Replayed"));
  char *at = strdup(jstr(&r, "confirmed_at"));

  post(d.port, "pay_1-A", GOOD, &r2); /* the same values: replayed */
  expect_record(&r2, "pay_1-A", 1250, "EUR", "acct-1");
  assert_non_null(header(&r2, "Idempotent-Replayed"));
  assert_string_equal(header(&r2, "Idempotent-Replayed"), "true");
  assert_string_equal(jstr(&r2, "confirmed_at"), at);
  resp_free(&r2);

  const char *conflicts[] = {
      "{\"amount_cents\":1251,\"currency\":\"EUR\",\"account\":\"acct-1\"}",
      "{\"amount_cents\":1250,\"currency\":\"USD\",\"account\":\"acct-1\"}",
      "{\"amount_cents\":1250,\"currency\":\"EUR\",\"account\":\"acct-2\"}",
  };
  for (int i = 0; i < 3; i++) {
    post(d.port, "pay_1-A", conflicts[i], &r2);
    expect_error(&r2, 409, "conflict", conflicts[i]);
    resp_free(&r2);
  }

  http(d.port, "GET", "/v1/payments/pay_1-A", NULL, NULL, &r2);
  expect_record(&r2, "pay_1-A", 1250, "EUR", "acct-1");
  assert_string_equal(jstr(&r2, "confirmed_at"), at);
  resp_free(&r2);
  http(d.port, "GET", "/v1/payments/never-seen", NULL, NULL, &r2);
  expect_error(&r2, 404, "not_found", "GET of an unknown id");
  resp_free(&r2);

  /* Unknown fields are ignored; the bounds are inclusive; a 64-character id; an account
   * of 64 code points in 128 bytes; Content-Type variants accepted. */
  char id64[65], acct[200] = "", body[400];
  memset(id64, 'z', 64);
  id64[64] = '\0';
  for (int i = 0; i < 64; i++)
    strcat(acct, "\xc3\xa9");
  struct {
    const char *id, *ct, *body;
  } ok[] = {
      {"extra", JSON_CT,
       "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":\"a\",\"note\":{\"x\":[1]}}"},
      {"max", JSON_CT,
       "{\"amount_cents\":1000000000000,\"currency\":\"JPY\",\"account\":\"a\"}"},
      {id64, JSON_CT, GOOD},
      {"utf8", JSON_CT, NULL},
      {"charset", "Content-Type: application/json; charset=utf-8\r\n", GOOD},
      {"merge", "Content-Type: application/merge-patch+json\r\n", GOOD},
  };
  body_for(body, sizeof body, 5, "GBP", acct);
  ok[3].body = body;
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char path[160];
    snprintf(path, sizeof path, "/v1/payments/%s/confirm", ok[i].id);
    http(d.port, "POST", path, ok[i].ct, ok[i].body, &r2);
    if (r2.status != 200)
      fail_msg("%s: want 200, got %d %s", ok[i].id, r2.status, r2.body ? r2.body : "");
    assert_string_equal(jstr(&r2, "id"), ok[i].id);
    resp_free(&r2);
  }
  http(d.port, "GET", "/v1/payments/utf8", NULL, NULL, &r2);
  expect_record(&r2, "utf8", 5, "GBP", acct);
  resp_free(&r2);

  free(at);
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

struct bad_case {
  const char *method, *path, *ct, *body;
  int status;
  const char *code;
};

/* Every input error, and the order of the checks. */
static void test_bad_input(void **state)
{
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "1"));
  char id65[66], acct65[80], acct65u[200] = "", big[66 * 1024 + 200];
  memset(id65, 'a', 65);
  id65[65] = '\0';
  memset(acct65, 'b', 65);
  acct65[65] = '\0';
  for (int i = 0; i < 65; i++)
    strcat(acct65u, "\xc3\xa9");
  char path65[120], bad_acct[200], bad_acct_u[300];
  snprintf(path65, sizeof path65, "/v1/payments/%s/confirm", id65);
  body_for(bad_acct, sizeof bad_acct, 1, "EUR", acct65);
  body_for(bad_acct_u, sizeof bad_acct_u, 1, "EUR", acct65u);
  /* 65 KiB: valid JSON padded with an ignored field. */
  int n = snprintf(big, sizeof big,
                   "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":\"a\",\"pad\":\"");
  memset(big + n, 'x', 65 * 1024 - (size_t)n - 2);
  strcpy(big + 65 * 1024 - 2, "\"}");

  const char *P = "/v1/payments/p1/confirm";
  const char *TXT = "Content-Type: text/plain\r\n";
  const struct bad_case cases[] = {
      {"POST", P, JSON_CT, "{", 400, "invalid_json"},
      {"POST", P, JSON_CT, "not json", 400, "invalid_json"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":\"a\"", 400,
       "invalid_json"},
      {"POST", P, JSON_CT, "{\"amount_cents\":100.0,\"currency\":\"EUR\",\"account\":\"a\"}",
       400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1e2,\"currency\":\"EUR\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":\"100\",\"currency\":\"EUR\",\"account\":\"a\"}",
       400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":null,\"currency\":\"EUR\",\"account\":\"a\"}",
       400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"currency\":\"EUR\",\"account\":\"a\"}", 400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":0,\"currency\":\"EUR\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":-5,\"currency\":\"EUR\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT,
       "{\"amount_cents\":1000000000001,\"currency\":\"EUR\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"account\":\"a\"}", 400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"eur\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EU\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EURO\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"E1R\",\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":978,\"account\":\"a\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EUR\"}", 400, "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":\"\"}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, "{\"amount_cents\":1,\"currency\":\"EUR\",\"account\":7}", 400,
       "invalid_field"},
      {"POST", P, JSON_CT, bad_acct, 400, "invalid_field"},
      {"POST", P, JSON_CT, bad_acct_u, 400, "invalid_field"},
      {"POST", "/v1/payments/bad.id/confirm", JSON_CT, GOOD, 400, "invalid_id"},
      {"POST", "/v1/payments/bad!id/confirm", JSON_CT, GOOD, 400, "invalid_id"},
      {"POST", path65, JSON_CT, GOOD, 400, "invalid_id"},
      {"POST", P, JSON_CT, big, 413, "body_too_large"},
      {"POST", P, TXT, GOOD, 415, "unsupported_media_type"},
      {"POST", P, "Content-Type: application/xml\r\n", GOOD, 415, "unsupported_media_type"},
      {"POST", P, NULL, GOOD, 415, "unsupported_media_type"},
      {"GET", P, NULL, NULL, 405, "method_not_allowed"},
      {"PUT", P, JSON_CT, GOOD, 405, "method_not_allowed"},
      {"DELETE", "/v1/payments/p1", NULL, NULL, 405, "method_not_allowed"},
      {"POST", "/v1/payments/p1", JSON_CT, GOOD, 405, "method_not_allowed"},
      {"GET", "/nope", NULL, NULL, 404, "not_found"},
      {"GET", "/v1/payments/p1/other", NULL, NULL, 404, "not_found"},
      {"POST", "/v1/other", JSON_CT, GOOD, 404, "not_found"},
      {"GET", "/v1/payments/bad.id", NULL, NULL, 400, "invalid_id"},
      /* The order: path, method, id, content type, size, body. */
      {"DELETE", "/v1/nothing/here", NULL, NULL, 404, "not_found"},
      {"GET", "/v1/payments/bad.id/confirm", TXT, NULL, 405, "method_not_allowed"},
      {"POST", "/v1/payments/bad.id/confirm", TXT, "{", 400, "invalid_id"},
      {"POST", P, TXT, big, 415, "unsupported_media_type"},
      {"POST", P, JSON_CT, NULL, 413, "body_too_large"}, /* big, not JSON: below */
  };
  size_t ncases = sizeof cases / sizeof cases[0];
  int bad = 0;
  for (size_t i = 0; i < ncases; i++) {
    struct resp r;
    const char *body = cases[i].body;
    char notjson[66 * 1024 + 1];
    if (i == ncases - 1) {
      memset(notjson, '{', 65 * 1024);
      notjson[65 * 1024] = '\0';
      body = notjson;
    }
    http(d.port, cases[i].method, cases[i].path, cases[i].ct, body, &r);
    char what[200];
    snprintf(what, sizeof what, "case %zu: %s %.60s", i, cases[i].method, cases[i].path);
    bad += !is_error(&r, cases[i].status, cases[i].code, what);
    if (cases[i].status == 405 && r.status == 405) {
      const char *allow = header(&r, "Allow");
      const char *want = strstr(cases[i].path, "/confirm") ? "POST" : "GET";
      if (!allow || !strstr(allow, want)) {
        fprintf(stderr, "%s: Allow: %s lacks %s\n", what, allow ? allow : "(none)", want);
        bad++;
      }
    }
    resp_free(&r);
  }
  if (bad)
    fail_msg("%d of %zu cases answered otherwise than the contract says", bad, ncases);
  /* Nothing of it reached a worker: p1 was never stored. */
  struct resp r;
  http(d.port, "GET", "/v1/payments/p1", NULL, NULL, &r);
  expect_error(&r, 404, "not_found", "p1 after bad input");
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* Two requests for one id at once: one 200, the other 409 in_progress. */
static void test_in_progress(void **state)
{
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "2", "--work-ms", "500"));
  struct job jobs[2] = {{d.port, "dup-1", "", 0, {0}, NULL},
                        {d.port, "dup-1", "", 150, {0}, NULL}};
  strcpy(jobs[0].body, GOOD);
  strcpy(jobs[1].body, GOOD);
  pthread_t th[2];
  jobs_start(jobs, th, 2);
  jobs_join(th, 2);
  expect_record(&jobs[0].r, "dup-1", 1250, "EUR", "acct-1");
  expect_error(&jobs[1].r, 409, "in_progress", "the second request");
  struct resp r;
  post(d.port, "dup-1", GOOD, &r);
  expect_record(&r, "dup-1", 1250, "EUR", "acct-1");
  assert_string_equal(header(&r, "Idempotent-Replayed"), "true");
  resp_free(&r);
  for (int i = 0; i < 2; i++)
    resp_free(&jobs[i].r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* --request-timeout passes first: 504 timeout; the job completes and a retry replays. */
static void test_timeout(void **state)
{
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "1", "--work-ms", "600",
                        "--request-timeout", "150ms"));
  struct resp r;
  post(d.port, "slow-1", GOOD, &r);
  expect_error(&r, 504, "timeout", "a request slower than --request-timeout");
  resp_free(&r);
  sleep_ms(900);
  post(d.port, "slow-1", GOOD, &r);
  expect_record(&r, "slow-1", 1250, "EUR", "acct-1");
  assert_string_equal(header(&r, "Idempotent-Replayed"), "true");
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

static json_int_t health_field(int port, const char *key, int *status)
{
  struct resp r;
  http(port, "GET", "/healthz", NULL, NULL, &r);
  *status = r.status;
  json_int_t v = r.json ? jint(&r, key) : -1;
  resp_free(&r);
  return v;
}

/* A full queue: 429 at once with Retry-After: 1; /healthz 503 saturated meanwhile. */
static void test_queue_full(void **state)
{
  struct daemon d;
  start_daemon(
      &d, ARGS("--store", "memory:", "--workers", "1", "--queue", "2", "--work-ms", "300"));
  enum { N = 10 };
  struct job jobs[N];
  pthread_t th[N];
  atomic_int done = 0;
  for (int i = 0; i < N; i++) {
    jobs[i] = (struct job){.port = d.port, .done = &done};
    snprintf(jobs[i].id, sizeof jobs[i].id, "q-%d", i);
    strcpy(jobs[i].body, GOOD);
  }
  jobs_start(jobs, th, N);
  /* Saturated while the queue is full (2 of 2), before the first job finishes. */
  struct resp h = {0};
  for (int t = 0; t < 25; t++) {
    resp_free(&h);
    http(d.port, "GET", "/healthz", NULL, NULL, &h);
    if (h.status == 503)
      break;
    sleep_ms(10);
  }
  if (h.status != 503 || !jstr(&h, "status") || strcmp(jstr(&h, "status"), "saturated") != 0)
    fail_msg("/healthz with a full queue: %d %s", h.status, h.body ? h.body : "");
  assert_int_equal(jint(&h, "queue_capacity"), 2);
  assert_true(jint(&h, "queue_depth") >= 2);
  assert_int_equal(jint(&h, "workers"), 1);
  resp_free(&h);
  jobs_join(th, N);
  int ok = 0, full = 0, fast = 0;
  for (int i = 0; i < N; i++) {
    struct resp *r = &jobs[i].r;
    if (r->status == 200) {
      expect_record(r, jobs[i].id, 1250, "EUR", "acct-1");
      ok++;
    } else {
      expect_error(r, 429, "queue_full", jobs[i].id);
      const char *ra = header(r, "Retry-After");
      if (!ra || strcmp(ra, "1") != 0)
        fail_msg("429 with Retry-After %s", ra ? ra : "(none)");
      full++;
      fast += r->ms < 100;
      if (r->ms > 250)
        fail_msg("a 429 took %lld ms", (long long)r->ms);
    }
  }
  if (ok < 3 || full == 0 || fast == 0)
    fail_msg("%d answered 200, %d 429 (%d in under 100 ms)", ok, full, fast);
  /* Idle again: 200 ok with an empty queue. */
  int st;
  assert_int_equal(health_field(d.port, "queue_depth", &st), 0);
  assert_int_equal(st, 200);
  struct resp m;
  http(d.port, "GET", "/metrics", NULL, NULL, &m);
  assert_int_equal(m.status, 200);
  const char *line = strstr(m.body, "\npaymentd_rejected_total ");
  if (!line || atol(line + 25) != full)
    fail_msg("paymentd_rejected_total is not %d", full);
  resp_free(&m);
  for (int i = 0; i < N; i++)
    resp_free(&jobs[i].r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* /healthz fields, /metrics names. */
static void test_health_metrics(void **state)
{
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--workers", "3", "--queue", "7"));
  struct resp r;
  http(d.port, "GET", "/healthz", NULL, NULL, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(r.json);
  assert_string_equal(jstr(&r, "status"), "ok");
  assert_int_equal(jint(&r, "queue_depth"), 0);
  assert_int_equal(jint(&r, "queue_capacity"), 7);
  assert_int_equal(jint(&r, "workers"), 3);
  assert_int_equal(jint(&r, "workers_busy"), 0);
  resp_free(&r);
  http(d.port, "POST", "/healthz", NULL, NULL, &r);
  expect_error(&r, 405, "method_not_allowed", "POST /healthz");
  resp_free(&r);

  post(d.port, "m-1", GOOD, &r);
  resp_free(&r);
  post(d.port, "m-1", GOOD, &r);
  resp_free(&r);
  post(d.port, "m-1", "{\"amount_cents\":2,\"currency\":\"EUR\",\"account\":\"x\"}", &r);
  resp_free(&r);
  http(d.port, "GET", "/metrics", NULL, NULL, &r);
  assert_int_equal(r.status, 200);
  const char *ct = header(&r, "Content-Type");
  assert_non_null(ct);
  assert_memory_equal(ct, "text/plain", 10);
  const char *names[] = {
      "\npaymentd_http_requests_total{",
      "\npaymentd_http_request_duration_seconds_bucket{",
      "\npaymentd_http_request_duration_seconds_count{",
      "\npaymentd_queue_depth 0",
      "\npaymentd_queue_capacity 7",
      "\npaymentd_workers 3",
      "\npaymentd_workers_busy 0",
      "\npaymentd_rejected_total 0",
      "\npaymentd_confirmations_total{",
      "\npaymentd_processing_duration_seconds_bucket",
      "\npaymentd_processing_duration_seconds_count",
      "result=\"confirmed\"} 1",
      "result=\"replayed\"} 1",
      "result=\"conflict\"} 1",
      "route=\"",
      "code=\"200\"",
      "# TYPE paymentd_http_request_duration_seconds histogram",
      "# TYPE paymentd_processing_duration_seconds histogram",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strstr(r.body, names[i]))
      fail_msg("/metrics lacks %s", names[i] + (names[i][0] == '\n'));
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* --auth-tokens: 401 with WWW-Authenticate: Bearer before any other check. */
static void test_auth(void **state)
{
  char tokens[300];
  snprintf(tokens, sizeof tokens, "%s/tokens", tmp_dir);
  FILE *f = fopen(tokens, "w");
  assert_non_null(f);
  fputs("tok-one\ntok-two\n", f);
  fclose(f);
  struct daemon d;
  start_daemon(&d, ARGS("--store", "memory:", "--auth-tokens", tokens));
  const char *P = "/v1/payments/a1/confirm";
  const struct {
    const char *method, *path, *headers, *body;
  } refused[] = {
      {"POST", P, "Content-Type: application/json\r\n", GOOD},
      {"POST", P, "Content-Type: application/json\r\nAuthorization: Bearer nope\r\n", GOOD},
      {"POST", P, "Content-Type: application/json\r\nAuthorization: Bearer tok-onex\r\n", GOOD},
      {"POST", P, "Content-Type: application/json\r\nAuthorization: Bearer tok-on\r\n", GOOD},
      {"POST", P, "Content-Type: application/json\r\nAuthorization: Basic dG9rLW9uZQ==\r\n",
       GOOD},
      {"POST", "/v1/payments/bad.id/confirm", "Content-Type: text/plain\r\n", "{"},
      {"DELETE", P, NULL, NULL},
      {"GET", "/v1/payments/a1", NULL, NULL},
      {"GET", "/v1/whatever", NULL, NULL},
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    struct resp r;
    http(d.port, refused[i].method, refused[i].path, refused[i].headers, refused[i].body, &r);
    if (r.status != 401)
      fail_msg("case %zu: want 401, got %d %s", i, r.status, r.body ? r.body : "");
    const char *wa = header(&r, "WWW-Authenticate");
    if (!wa || strncmp(wa, "Bearer", 6) != 0)
      fail_msg("case %zu: WWW-Authenticate %s", i, wa ? wa : "(none)");
    resp_free(&r);
  }
  struct resp r;
  http(d.port, "POST", P, "Content-Type: application/json\r\nAuthorization: Bearer tok-two\r\n",
       GOOD, &r);
  expect_record(&r, "a1", 1250, "EUR", "acct-1");
  resp_free(&r);
  http(d.port, "GET", "/v1/payments/a1", "Authorization: Bearer tok-one\r\n", NULL, &r);
  expect_record(&r, "a1", 1250, "EUR", "acct-1");
  resp_free(&r);
  http(d.port, "POST", "/v1/payments/bad.id/confirm",
       "Content-Type: application/json\r\nAuthorization: Bearer tok-one\r\n", GOOD, &r);
  expect_error(&r, 400, "invalid_id", "a bad id with a good token");
  resp_free(&r);
  http(d.port, "GET", "/healthz", NULL, NULL, &r); /* not under /v1/ */
  assert_int_equal(r.status, 200);
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);
  char *log = slurp(d.log);
  assert_null(strstr(log, "tok-one"));
  assert_null(strstr(log, "tok-two"));
  free(log);
}

/* Run the child with args expecting exit 2 and a one-line error on stderr. */
static void expect_exit2(const char *const *args, const char *const *env, const char *what)
{
  char log[300];
  snprintf(log, sizeof log, "%s/flags.log", tmp_dir);
  struct daemon d = {0};
  d.pid = spawn_child(args, env, log);
  snprintf(d.log, sizeof d.log, "%s", log);
  if (!wait_exit(&d, 20000)) {
    kill_daemon(&d);
    fail_msg("%s: still running", what);
  }
  char *out = slurp(log);
  size_t len = strlen(out);
  bool one_line = len > 1 && out[len - 1] == '\n' && strchr(out, '\n') == out + len - 1;
  if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 2 || !one_line)
    fail_msg("%s: want exit 2 and one line, got status %d and \"%s\"", what, d.status, out);
  free(out);
}

/* Invalid flags and environment variables; the environment and its precedence. */
static void test_flags_env(void **state)
{
  char busy[64], dbbad[300];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 1), 0);
  getsockname(fd, (struct sockaddr *)&a, &alen);
  snprintf(busy, sizeof busy, "127.0.0.1:%d", ntohs(a.sin_port));
  snprintf(dbbad, sizeof dbbad, "sqlite:%s/no/such/dir/p.db", tmp_dir);
#define BAD(...) ARGS("--debug-listen", "", "--store", "memory:", __VA_ARGS__)
  expect_exit2(BAD("--workers", "0"), NULL, "--workers 0");
  expect_exit2(BAD("--workers", "many"), NULL, "--workers many");
  expect_exit2(BAD("--queue", "-1"), NULL, "--queue -1");
  expect_exit2(BAD("--queue", "12x"), NULL, "--queue 12x");
  expect_exit2(BAD("--work-ms", "-5"), NULL, "--work-ms -5");
  expect_exit2(BAD("--request-timeout", "soon"), NULL, "--request-timeout soon");
  expect_exit2(BAD("--shutdown-timeout", "-1s"), NULL, "--shutdown-timeout -1s");
  expect_exit2(BAD("--log-level", "loud"), NULL, "--log-level loud");
  expect_exit2(BAD("--log-format", "xml"), NULL, "--log-format xml");
  expect_exit2(BAD("--no-such-flag", "1"), NULL, "an unknown flag");
  expect_exit2(BAD("--listen", "not-an-address"), NULL, "--listen not-an-address");
  expect_exit2(BAD("--listen", busy), NULL, "--listen on a port in use");
  expect_exit2(ARGS("--debug-listen", "", "--listen", "127.0.0.1:0", "--store", "bogus:x"),
               NULL, "--store bogus:x");
  expect_exit2(ARGS("--debug-listen", "", "--listen", "127.0.0.1:0", "--store", dbbad), NULL,
               "an unusable sqlite path");
  expect_exit2(BAD("--listen", "127.0.0.1:0"), ARGS("PAYMENTD_QUEUE=abc"),
               "PAYMENTD_QUEUE=abc");
  close(fd);

  struct daemon d;
  int st;
  start_daemon_env(&d, ARGS("--store", "memory:"),
                   ARGS("PAYMENTD_QUEUE=5", "PAYMENTD_WORKERS=2"));
  assert_int_equal(health_field(d.port, "queue_capacity", &st), 5);
  assert_int_equal(health_field(d.port, "workers", &st), 2);
  assert_int_equal(stop_daemon(&d, 20000), 0);
  start_daemon_env(&d, ARGS("--store", "memory:", "--queue", "9"), ARGS("PAYMENTD_QUEUE=5"));
  assert_int_equal(health_field(d.port, "queue_capacity", &st), 9);
  assert_int_equal(stop_daemon(&d, 20000), 0);
  /* PAYMENTD_STORE and PAYMENTD_DEBUG_LISTEN (the - → _ rule) are read too. */
  start_daemon_env(&d, NULL, ARGS("PAYMENTD_STORE=memory:", "PAYMENTD_WORK_MS=1"));
  assert_int_equal(health_field(d.port, "queue_capacity", &st), 100);
  assert_int_equal(stop_daemon(&d, 20000), 0);
}

/* ---- shutdown ---- */

/* The ids in the SQLite database at path: every table with an id column. */
static int db_ids(const char *path, char ids[][80], int max)
{
  sqlite3 *db;
  int n = 0;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  sqlite3_stmt *tables;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type='table'",
                                      -1, &tables, NULL),
                   SQLITE_OK);
  while (sqlite3_step(tables) == SQLITE_ROW) {
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT id FROM \"%s\"", sqlite3_column_text(tables, 0));
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
      continue;
    while (sqlite3_step(st) == SQLITE_ROW && n < max)
      snprintf(ids[n++], 80, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
  }
  sqlite3_finalize(tables);
  sqlite3_close(db);
  return n;
}

static bool has_id(char ids[][80], int n, const char *id)
{
  for (int i = 0; i < n; i++)
    if (strcmp(ids[i], id) == 0)
      return true;
  return false;
}

/* Start N confirmations and wait until the service holds them all (queued, in a worker
 * or answered), so that none waits in the listen backlog when the signal comes. */
static void load_and_wait(struct daemon *d, struct job *jobs, pthread_t *th, int n,
                          atomic_int *done)
{
  for (int i = 0; i < n; i++) {
    jobs[i] = (struct job){.port = d->port, .done = done};
    snprintf(jobs[i].id, sizeof jobs[i].id, "load-%03d", i);
    body_for(jobs[i].body, sizeof jobs[i].body, 100 + i, "EUR", "acct-load");
  }
  jobs_start(jobs, th, n);
  int64_t end = mono_ms() + 15000;
  for (;;) {
    int st;
    json_int_t depth = health_field(d->port, "queue_depth", &st);
    json_int_t busy = health_field(d->port, "workers_busy", &st);
    if (depth + busy + atomic_load(done) >= n)
      return;
    if (mono_ms() > end)
      fail_msg("the load never all arrived (%lld queued, %lld busy, %d done)", (long long)depth,
               (long long)busy, atomic_load(done));
    sleep_ms(5);
  }
}

/* A keep-alive connection with one request answered on it, for a request later. */
static int open_conn(int port)
{
  int fd = connect_to(port);
  assert_true(fd >= 0);
  write_req(fd, "GET", "/healthz", NULL, NULL, 0, false);
  struct resp r = {0};
  read_resp(fd, &r);
  assert_true(r.status == 200 || r.status == 503);
  resp_free(&r);
  return fd;
}

/* SIGTERM under load: exit 0, every request answered 200, the database holds exactly
 * those ids; new requests on open connections get 503 shutting_down; a restart on the
 * same database replays. */
static void test_sigterm_drains(void **state)
{
  enum { N = 40 };
  char db[300], store[320];
  snprintf(db, sizeof db, "%s/p.db", tmp_dir);
  snprintf(store, sizeof store, "sqlite:%s", db);
  struct daemon d;
  start_daemon(&d, ARGS("--store", store, "--workers", "2", "--queue", "64", "--work-ms", "50",
                        "--request-timeout", "30s"));
  int c1 = open_conn(d.port), c2 = open_conn(d.port);
  struct job jobs[N];
  pthread_t th[N];
  atomic_int done = 0;
  load_and_wait(&d, jobs, th, N, &done);
  send_signal(d.pid, SIGTERM);
  sleep_ms(100);
  int left = N - atomic_load(&done);
  write_req(c1, "POST", "/v1/payments/late-1/confirm", JSON_CT, GOOD, strlen(GOOD), false);
  write_req(c2, "GET", "/healthz", NULL, NULL, 0, false);
  struct resp r1 = {0}, r2 = {0};
  read_resp(c1, &r1);
  read_resp(c2, &r2);
  close(c1);
  close(c2);
  jobs_join(th, N);
  if (!wait_exit(&d, 30000)) {
    kill_daemon(&d);
    dump_log(&d);
    fail_msg("no exit after SIGTERM");
  }
  if (left < 5)
    fprintf(stderr, "note: only %d requests were still in flight at the late requests\n", left);
  if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 0) {
    dump_log(&d);
    fail_msg("exit status %d after SIGTERM", d.status);
  }
  static char ids[MAX_IDS][80];
  int n = db_ids(db, ids, MAX_IDS);
  for (int i = 0; i < N; i++) {
    expect_record(&jobs[i].r, jobs[i].id, 100 + i, "EUR", "acct-load");
    if (!has_id(ids, n, jobs[i].id))
      fail_msg("%s was answered 200 but is not in the database", jobs[i].id);
    resp_free(&jobs[i].r);
  }
  if (n != N)
    fail_msg("the database holds %d ids, %d were answered 200", n, N);

  start_daemon(&d, ARGS("--store", store, "--workers", "1"));
  struct resp r;
  post(d.port, "load-007",
       "{\"amount_cents\":107,\"currency\":\"EUR\",\"account\":\"acct-load\"}", &r);
  expect_record(&r, "load-007", 107, "EUR", "acct-load");
  assert_string_equal(header(&r, "Idempotent-Replayed"), "true");
  resp_free(&r);
  assert_int_equal(stop_daemon(&d, 20000), 0);

  /* The requests on connections opened before the signal (checked last, so that the
   * database is checked whatever they got). */
  expect_error(&r1, 503, "shutting_down", "a new request during shutdown");
  const char *conn = header(&r1, "Connection");
  if (!conn || strcasecmp(conn, "close") != 0)
    fail_msg("503 during shutdown with Connection: %s", conn ? conn : "(none)");
  assert_int_equal(r2.status, 503);
  assert_non_null(r2.json);
  assert_string_equal(jstr(&r2, "status"), "shutting_down");
  resp_free(&r1);
  resp_free(&r2);
}

/* A second signal: exit 1 at once; every id answered 200 is still in the database. */
static void test_second_signal(void **state)
{
  enum { N = 30 };
  char db[300], store[320];
  snprintf(db, sizeof db, "%s/p2.db", tmp_dir);
  snprintf(store, sizeof store, "sqlite:%s", db);
  struct daemon d;
  start_daemon(&d, ARGS("--store", store, "--workers", "1", "--queue", "64", "--work-ms", "100",
                        "--request-timeout", "30s"));
  struct job jobs[N];
  pthread_t th[N];
  atomic_int done = 0;
  load_and_wait(&d, jobs, th, N, &done);
  send_signal(d.pid, SIGTERM);
  sleep_ms(300);
  int64_t t0 = mono_ms();
  send_signal(d.pid, SIGTERM);
  if (!wait_exit(&d, 5000)) {
    kill_daemon(&d);
    dump_log(&d);
    fail_msg("no exit within 5 s of the second signal");
  }
  int64_t took = mono_ms() - t0;
  jobs_join(th, N);
  if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 1)
    fail_msg("exit status %d after a second signal (want exit 1)", d.status);
  if (took > 2000)
    fail_msg("the second signal took %lld ms to end the process", (long long)took);
  static char ids[MAX_IDS][80];
  int n = db_ids(db, ids, MAX_IDS), ok = 0;
  for (int i = 0; i < N; i++) {
    if (jobs[i].r.status == 200) {
      ok++;
      if (!has_id(ids, n, jobs[i].id))
        fail_msg("%s was answered 200 but is not in the database", jobs[i].id);
    } else if (jobs[i].r.status != 0 && jobs[i].r.status != 503) {
      fail_msg("%s answered %d", jobs[i].id, jobs[i].r.status);
    }
    resp_free(&jobs[i].r);
  }
  if (ok == 0 || ok == N)
    fail_msg("%d of %d answered 200: the second signal did not cut the drain", ok, N);
}

int main(int argc, char **argv)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_confirm_replay_conflict, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
      cmocka_unit_test_setup_teardown(test_in_progress, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_health_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flags_env, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sigterm_drains, setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_signal, setup, teardown),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
