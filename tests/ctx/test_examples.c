/* test_examples.c: the ctx examples, run end to end as a user would.
 *
 * examples/echo_shutdown: start it on a free loopback port, echo a line, send SIGTERM and
 * check the graceful shutdown (the open connection keeps being served, new connections
 * are refused, exit 0 once the client leaves); a second signal cuts the grace period
 * short (exit 1); a client that stays past the grace period is disconnected (exit 0).
 * examples/fanout_first_error: exits 0 and reports the failing job's error.
 *
 * The binaries are found beside the test's build directory (<build>/examples/); a build
 * without examples (WEFT_BUILD_EXAMPLES=OFF) skips these tests. No weft runtime runs in
 * this process: the test is a plain client with poll(2) timeouts. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft_test.h"

#define IO_TIMEOUT_MS 30000 /* generous: sanitizer builds on a busy machine */

static bool example_path(const char *name, char *out, size_t size)
{
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    return false;
  self[n] = '\0';
  snprintf(out, size, "%s/../examples/%s", dirname(self), name);
  return access(out, X_OK) == 0;
}

struct proc {
  pid_t pid;
  int out;        /* read end of its stdout */
  char log[8192]; /* everything it printed so far */
  size_t len;
};

static void start(struct proc *p, const char *name, const char *arg1, const char *arg2)
{
  char path[4200];
  if (!example_path(name, path, sizeof path))
    skip();
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  p->len = 0;
  p->log[0] = '\0';
  p->pid = fork();
  assert_true(p->pid >= 0);
  if (p->pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execl(path, path, arg1, arg2, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  p->out = fds[0];
}

/* Read its output until it contains needle or timeout_ms pass. */
static bool read_until(struct proc *p, const char *needle, int timeout_ms)
{
  int64_t end = weft_now() + MS(timeout_ms);
  while (!strstr(p->log, needle)) {
    int left = (int)((end - weft_now()) / 1000000);
    struct pollfd pf = {.fd = p->out, .events = POLLIN};
    if (left <= 0 || poll(&pf, 1, left) <= 0)
      return false;
    ssize_t r = read(p->out, p->log + p->len, sizeof p->log - 1 - p->len);
    if (r <= 0)
      return false;
    p->len += (size_t)r;
    p->log[p->len] = '\0';
  }
  return true;
}

/* Wait for it to exit (killing it after timeout_ms) and return the wait status. */
static int finish(struct proc *p, int timeout_ms)
{
  int status = 0;
  int64_t end = weft_now() + MS(timeout_ms);
  while (waitpid(p->pid, &status, WNOHANG) == 0) {
    if (weft_now() > end) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &status, 0);
      fprintf(stderr, "example did not exit in time; output:\n%s\n", p->log);
      break;
    }
    usleep(10000);
  }
  read_until(p, "\x01", 100); /* collect the rest of its output (EOF ends it) */
  close(p->out);
  return status;
}

static int listening_port(struct proc *p)
{
  if (!read_until(p, "\n", IO_TIMEOUT_MS))
    return -1;
  const char *at = strstr(p->log, "listening on 127.0.0.1:");
  return at ? atoi(at + strlen("listening on 127.0.0.1:")) : -1;
}

static int dial(int port)
{
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

/* Receive exactly len bytes (or fewer at EOF) within the I/O timeout. */
static ssize_t recv_exactly(int fd, char *buf, size_t len)
{
  size_t got = 0;
  while (got < len) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    if (poll(&pf, 1, IO_TIMEOUT_MS) <= 0)
      return -ETIMEDOUT;
    ssize_t r = recv(fd, buf + got, len - got, 0);
    if (r < 0)
      return -errno;
    if (r == 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

static void echo_line(int fd, const char *line)
{
  char buf[256] = {0};
  size_t len = strlen(line);
  assert_int_equal(send(fd, line, len, MSG_NOSIGNAL), (ssize_t)len);
  assert_int_equal(recv_exactly(fd, buf, len), (ssize_t)len);
  assert_string_equal(buf, line);
}

/* ---- first signal: graceful ---- */

static void test_echo_graceful(void **state)
{
  (void)state;
  struct proc p;
  start(&p, "echo_shutdown", "0", "60");
  int port = listening_port(&p);
  assert_true(port > 0);
  int fd = dial(port);
  assert_true(fd >= 0);
  echo_line(fd, "hello, weft\n");

  kill(p.pid, SIGTERM);
  assert_true(read_until(&p, "no new connections", IO_TIMEOUT_MS));
  echo_line(fd, "still served\n"); /* the open connection finishes its work */
  /* New connections are refused once the listener has closed its socket. */
  int refused = 0;
  for (int64_t end = weft_now() + MS(IO_TIMEOUT_MS); !refused && weft_now() < end;) {
    int c = dial(port);
    if (c == -ECONNREFUSED)
      refused = 1;
    else if (c >= 0)
      close(c); /* accepted into the backlog before the close: try again */
    usleep(20000);
  }
  assert_true(refused);
  close(fd); /* the last client leaves: the server exits */
  int status = finish(&p, IO_TIMEOUT_MS);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "status %d, output:\n%s\n", status, p.log);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_non_null(strstr(p.log, "stopped"));
}

/* ---- a second signal ends the grace period at once ---- */

static void test_echo_second_signal(void **state)
{
  (void)state;
  struct proc p;
  start(&p, "echo_shutdown", "0", "600"); /* a grace period the test would never outlast */
  int port = listening_port(&p);
  assert_true(port > 0);
  int fd = dial(port);
  assert_true(fd >= 0);
  echo_line(fd, "ping\n");
  kill(p.pid, SIGINT);
  /* Only after the first is handled: two pending signals of one kind would merge. */
  assert_true(read_until(&p, "no new connections", IO_TIMEOUT_MS));
  kill(p.pid, SIGINT);
  int status = finish(&p, IO_TIMEOUT_MS);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
  assert_non_null(strstr(p.log, "second signal"));
  char c;
  assert_int_equal(recv_exactly(fd, &c, 1), 0); /* the server closed our connection */
  close(fd);
}

/* ---- a client that stays past the grace period is disconnected ---- */

static void test_echo_grace_expires(void **state)
{
  (void)state;
  struct proc p;
  start(&p, "echo_shutdown", "0", "1");
  int port = listening_port(&p);
  assert_true(port > 0);
  int fd = dial(port);
  assert_true(fd >= 0);
  echo_line(fd, "idle now\n");
  kill(p.pid, SIGTERM);
  char c;
  assert_int_equal(recv_exactly(fd, &c, 1), 0); /* EOF once the grace period is over */
  int status = finish(&p, IO_TIMEOUT_MS);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_non_null(strstr(p.log, "grace period over"));
  close(fd);
}

/* ---- fanout_first_error ---- */

static void test_fanout_first_error(void **state)
{
  (void)state;
  struct proc p;
  start(&p, "fanout_first_error", "40", "13");
  int status = finish(&p, IO_TIMEOUT_MS);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "status %d, output:\n%s\n", status, p.log);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_non_null(strstr(p.log, "job 13 failed"));
  assert_non_null(strstr(p.log, "group error: ECONNRESET"));
}

int main(int argc, char **argv)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_echo_graceful),
      cmocka_unit_test(test_echo_second_signal),
      cmocka_unit_test(test_echo_grace_expires),
      cmocka_unit_test(test_fanout_first_error),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
