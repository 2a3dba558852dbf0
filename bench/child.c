/* child.c: repetitions in a fresh process, and running code inside a runtime.
 *
 * A workload flagged BENCH_FRESH_PROCESS measures each repetition in a new process: the
 * parent re-executes this program (/proc/self/exe) as "weft-bench --child NAME N" with
 * its stdout on a pipe; the child starts a runtime, does the one repetition (run(N) for
 * sized workloads, measure() for fixed ones, N = 0) and prints the value with full
 * precision; the parent reads it back. Nothing the parent did before (earlier workloads,
 * warm-up, calibration) leaves memory, caches or recycled records behind for the child. */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "weft/runtime.h"

extern char **environ;

const struct bench_workload *bench_find(const char *name)
{
  for (int i = 0; i < bench_nworkloads; i++)
    if (strcmp(bench_workloads[i].name, name) == 0)
      return &bench_workloads[i];
  return NULL;
}

void bench_run_in_runtime(int procs, int (*fn)(void *), void *arg)
{
  weft_config cfg = {.procs = procs, .stack_guard = 1};
  int rc = weft_main_with(&cfg, fn, arg);
  if (rc != 0)
    bench_die("runtime with %d procs failed: %d", procs, rc);
}

/* Read all of fd (the child's stdout) into buf, NUL-terminated. */
static void read_all(int fd, char *buf, size_t cap)
{
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, cap - 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0 || (len += (size_t)r) == cap - 1)
      break;
  }
  buf[len] = '\0';
}

double bench_child_value(const struct bench_workload *w, int64_t n)
{
  char nbuf[32], out[128], *end;
  int fds[2], status;
  pid_t pid;
  posix_spawn_file_actions_t fa;

  snprintf(nbuf, sizeof nbuf, "%lld", (long long)n);
  char *argv[] = {"weft-bench", "--child", (char *)w->name, nbuf, NULL};
  if (pipe(fds) != 0)
    bench_die("%s: pipe: %s", w->name, strerror(errno));
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  posix_spawn_file_actions_addclose(&fa, fds[1]);
  fflush(stdout);
  int err = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (err != 0)
    bench_die("%s: cannot start child: %s", w->name, strerror(err));
  read_all(fds[0], out, sizeof out);
  close(fds[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    bench_die("%s: child failed (status %d)", w->name, status);
  double v = strtod(out, &end);
  if (end == out)
    bench_die("%s: child printed \"%s\", not a number", w->name, out);
  return v;
}

struct child_call {
  const struct bench_workload *w;
  int64_t n;
  double value;
};

static int child_body(void *arg)
{
  struct child_call *call = arg;
  if (call->w->run) {
    int64_t ops = 0;
    int64_t ns = call->w->run(call->n, &ops);
    call->value = (double)ns / (double)(ops > 0 ? ops : 1);
  } else {
    call->value = call->w->measure();
  }
  return 0;
}

int bench_child_main(const char *name, const char *n)
{
  struct child_call call = {bench_find(name), strtoll(n, NULL, 10), 0};
  if (!call.w)
    bench_die("--child: unknown workload \"%s\"", name);
  if (call.w->run && call.n <= 0)
    bench_die("--child %s: N must be positive", name);
  bench_run_in_runtime(call.w->procs, child_body, &call);
  printf("%.17g\n", call.value);
  return fflush(stdout) == 0 ? 0 : 1;
}
