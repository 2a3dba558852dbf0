/* weft_test.c: see weft_test.h. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft_test.h"

static char self_path[4096];

/* The leak check of every test: the test's main runs inside leak_checked_main, which calls
 * weft_leak_verify once main's function has returned, while the runtime still runs. */
static const weft_leak_options *leak_opts;
static bool leak_check_off;

void weft_test_leak_options(const weft_leak_options *opts, bool enabled)
{
  leak_opts = opts;
  leak_check_off = !enabled;
}

struct leak_checked {
  int (*fn)(void *);
  void *arg;
  int leak_rc;
};

static int leak_checked_main(void *arg)
{
  struct leak_checked *lc = arg;
  int rc = lc->fn(lc->arg);
  if (!leak_check_off)
    lc->leak_rc = weft_leak_verify(leak_opts);
  return rc;
}

int run_weft(int procs, int (*fn)(void *), void *arg)
{
  weft_config cfg = {.procs = procs, .stack_guard = 1, .leak_check = WEFT_LEAK_REPORT};
  return run_weft_with(&cfg, fn, arg);
}

int run_weft_with(const weft_config *cfg, int (*fn)(void *), void *arg)
{
  struct leak_checked lc = {fn, arg, 0};
  int rc = weft_main_with(cfg, leak_checked_main, &lc);
  if (lc.leak_rc != 0)
    fail_msg("weft_leak_verify: %s (the dump is on stderr)", weft_strerror(lc.leak_rc));
  if (weft_leaked() != 0 && !leak_check_off)
    fail_msg("%ld coroutine(s) leaked (still alive when main returned)", weft_leaked());
  return rc;
}

void run_weft_p1to4(int (*fn)(void *), void *arg)
{
  for (int p = 1; p <= 4; p++) {
    int rc = run_weft(p, fn, arg);
    if (rc != 0)
      fail_msg("scenario failed with P=%d: %d", p, rc);
  }
}

uint64_t test_seed(void)
{
  static uint64_t seed;
  if (!seed) {
    const char *s = getenv("WEFT_TEST_SEED");
    seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    if (!seed)
      seed = 1;
    fprintf(stderr, "seed: WEFT_TEST_SEED=%llu\n", (unsigned long long)seed);
  }
  return seed;
}

int weft_test_main(int argc, char **argv, const struct CMUnitTest *tests, size_t ntests,
                   const struct child_scenario *children, size_t nchildren)
{
  ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
  if (n > 0)
    self_path[n] = '\0';
  if (argc == 3 && strcmp(argv[1], "--child") == 0) {
    for (size_t i = 0; i < nchildren; i++) {
      if (strcmp(children[i].name, argv[2]) == 0) {
        children[i].run();
        return 0;
      }
    }
    fprintf(stderr, "unknown child scenario %s\n", argv[2]);
    return 2;
  }
  return _cmocka_run_group_tests(argv[0], tests, ntests, NULL, NULL);
}

/* Cross builds run each test under an emulator (qemu-user; ctest passes its command line,
 * words separated by spaces, in WEFT_TEST_EMULATOR). Without binfmt_misc the kernel cannot
 * exec the test binary itself, so a child that fails to exec directly is started through
 * the emulator. Fills argv (room for n entries) and returns false if there is none. */
static bool emulator_argv(char *buf, size_t size, char **argv, size_t n, const char *name)
{
  const char *emu = getenv("WEFT_TEST_EMULATOR");
  size_t i = 0;
  if (!emu || !*emu || strlen(emu) >= size)
    return false;
  strcpy(buf, emu);
  for (char *save, *w = strtok_r(buf, " ", &save); w && i + 4 < n;
       w = strtok_r(NULL, " ", &save))
    argv[i++] = w;
  if (i == 0)
    return false;
  argv[i++] = self_path;
  argv[i++] = "--child";
  argv[i++] = (char *)name;
  argv[i] = NULL;
  return true;
}

char *expect_child_output(const char *name, int timeout_s, int *status)
{
  int pipefd[2];
  char emu_buf[1024], *emu_argv[16];
  bool emulated = emulator_argv(emu_buf, sizeof emu_buf, emu_argv, 16, name);
  assert_int_equal(pipe(pipefd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(pipefd[1], 2);
    close(pipefd[0]);
    close(pipefd[1]);
    execl(self_path, self_path, "--child", name, (char *)NULL);
    if (emulated)
      execv(emu_argv[0], emu_argv);
    _exit(127);
  }
  close(pipefd[1]);
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  time_t end = time(NULL) + timeout_s;
  for (;;) {
    struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
    int left = (int)(end - time(NULL));
    if (left <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    if (poll(&p, 1, left * 1000) <= 0)
      continue;
    if (len + 4096 > cap)
      buf = realloc(buf, cap *= 2);
    ssize_t r = read(pipefd[0], buf + len, cap - len - 1);
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  buf[len] = '\0';
  close(pipefd[0]);
  waitpid(pid, status, 0);
  return buf;
}

char *expect_child_died(const char *name, int timeout_s)
{
  int status = 0;
  char *out = expect_child_output(name, timeout_s, &status);
  bool died = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
  if (!died) {
    fprintf(stderr, "child %s: status %d, stderr:\n%s\n", name, status, out);
    free(out);
    fail_msg("child %s exited normally", name);
  }
  return out;
}

void expect_child(const char *name, const char *needle, int timeout_s)
{
  char *out = expect_child_died(name, timeout_s);
  if (!strstr(out, needle)) {
    fprintf(stderr, "child %s stderr:\n%s\n", name, out);
    free(out);
    fail_msg("child %s did not fail with \"%s\"", name, needle);
  }
  free(out);
}

int test_cert_make(struct test_cert *tc)
{
  snprintf(tc->dir, sizeof tc->dir, "/tmp/weft-test-cert-XXXXXX");
  if (!mkdtemp(tc->dir))
    return -1;
  snprintf(tc->cert, sizeof tc->cert, "%s/cert.pem", tc->dir);
  snprintf(tc->key, sizeof tc->key, "%s/key.pem", tc->dir);
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
           "-keyout %s -out %s -days 2 -subj /CN=localhost "
           "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
           tc->key, tc->cert);
  return system(cmd) == 0 ? 0 : -1;
}

void test_cert_remove(struct test_cert *tc)
{
  unlink(tc->cert);
  unlink(tc->key);
  rmdir(tc->dir);
}

char *run_example(const char *name, const char *const *args, int timeout_ms, int *status)
{
  char self[4096], path[4400];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    return NULL;
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash)
    *slash = '\0';
  snprintf(path, sizeof path, "%s/../examples/%s", self, name);
  if (access(path, X_OK) != 0)
    return NULL;
  int fds[2];
  if (pipe(fds) != 0)
    return NULL;
  pid_t pid = fork();
  if (pid == 0) {
    const char *argv[16] = {path};
    for (int i = 0; args && args[i] && i < 14; i++)
      argv[i + 1] = args[i];
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    execv(path, (char *const *)argv);
    _exit(127);
  }
  close(fds[1]);
  size_t cap = 65536, len = 0;
  char *out = malloc(cap);
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long left =
        timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
    struct pollfd pf = {.fd = fds[0], .events = POLLIN};
    if (left <= 0 || poll(&pf, 1, (int)left) <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    if (len + 4096 > cap)
      out = realloc(out, cap *= 2);
    ssize_t r = read(fds[0], out + len, cap - len - 1);
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  out[len] = '\0';
  close(fds[0]);
  waitpid(pid, status, 0);
  return out;
}
