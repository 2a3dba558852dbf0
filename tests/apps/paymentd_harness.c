/* paymentd_harness.c: the child runner and HTTP helpers of the paymentd contract tests
 * (see paymentd_harness.h; the tests are in test_paymentd.c).
 *
 * Responses are parsed here (status line, headers, a Content-Length, chunked or
 * read-to-close body) and JSON bodies with jansson. Every socket has a receive timeout
 * and every child is killed after a deadline, so no helper waits unbounded. */
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
#include "paymentd_harness.h"
#include "weft_test.h"

extern char **environ;

static char bin_path[4400];
char tmp_dir[256];
enum { MAX_LIVE = 64 };
static pid_t live[MAX_LIVE]; /* children started by this test: killed in teardown */
static int nlive;

int64_t mono_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

/* ---- the child ---- */

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
pid_t spawn_child(const char *const *args, const char *const *env, const char *log)
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
bool wait_exit(struct daemon *d, int timeout_ms)
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

char *slurp(const char *path)
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

void dump_log(const struct daemon *d)
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
void send_signal(pid_t pid, int sig)
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

void kill_daemon(struct daemon *d)
{
  if (d->pid > 0 && !d->reaped) {
    kill(d->pid, SIGKILL);
    wait_exit(d, 10000);
  }
}

/* ---- HTTP over plain sockets ---- */

void resp_free(struct resp *r)
{
  free(r->head);
  free(r->body);
  json_decref(r->json);
  memset(r, 0, sizeof *r);
}

/* The value of header name in r (a static ring slot), or NULL. */
const char *header(const struct resp *r, const char *name)
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

int connect_to(int port)
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
void read_resp(int fd, struct resp *r)
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
void write_req(int fd, const char *method, const char *path, const char *extra,
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
void http(int port, const char *method, const char *path, const char *extra, const char *body,
          struct resp *r)
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

const char JSON_CT[] = "Content-Type: application/json\r\n";

void post(int port, const char *id, const char *body, struct resp *r)
{
  char path[256];
  snprintf(path, sizeof path, "/v1/payments/%s/confirm", id);
  http(port, "POST", path, JSON_CT, body, r);
}

void start_daemon_env(struct daemon *d, const char *const *args, const char *const *env)
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

void start_daemon(struct daemon *d, const char *const *args)
{
  start_daemon_env(d, args, NULL);
}

/* SIGTERM, and the exit status (fails after timeout_ms). */
int stop_daemon(struct daemon *d, int timeout_ms)
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

/* Whether r is an error of the contract: status, JSON Content-Type, and the body exactly
 * {"error": code, "message": non-empty text}; prints what differs when not. */
bool is_error(const struct resp *r, int status, const char *code, const char *what)
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

void expect_error(const struct resp *r, int status, const char *code, const char *what)
{
  if (!is_error(r, status, code, what))
    fail_msg("%s: not the expected error", what);
}

const char *jstr(const struct resp *r, const char *key)
{
  json_t *v = json_object_get(r->json, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

json_int_t jint(const struct resp *r, const char *key)
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
void expect_record(const struct resp *r, const char *id, long long amount, const char *currency,
                   const char *account)
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

int setup(void **state)
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

int teardown(void **state)
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

void jobs_start(struct job *jobs, pthread_t *th, int n)
{
  for (int i = 0; i < n; i++)
    assert_int_equal(pthread_create(&th[i], NULL, job_run, &jobs[i]), 0);
}

void jobs_join(pthread_t *th, int n)
{
  for (int i = 0; i < n; i++)
    pthread_join(th[i], NULL);
}

void body_for(char *out, size_t cap, long long amount, const char *cur, const char *acct)
{
  snprintf(out, cap, "{\"amount_cents\":%lld,\"currency\":\"%s\",\"account\":\"%s\"}", amount,
           cur, acct);
}

json_int_t health_field(int port, const char *key, int *status)
{
  struct resp r;
  http(port, "GET", "/healthz", NULL, NULL, &r);
  *status = r.status;
  json_int_t v = r.json ? jint(&r, key) : -1;
  resp_free(&r);
  return v;
}

/* The ids in the SQLite database at path: every table with an id column. */
int db_ids(const char *path, char ids[][80], int max)
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

bool has_id(char ids[][80], int n, const char *id)
{
  for (int i = 0; i < n; i++)
    if (strcmp(ids[i], id) == 0)
      return true;
  return false;
}

/* A keep-alive connection with one request answered on it, for a request later. */
int open_conn(int port)
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
