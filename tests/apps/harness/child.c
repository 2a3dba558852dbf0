/* child.c: spawning, signalling and reaping the app under test (see child.h). */
#include "child.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "coro_check.h"
#include "fixture.h"
#include "http.h"
#include "weft_test.h"

extern char **environ;

enum { MAX_LIVE = 64, MAX_ENV = 512 };

const char *child_env_drop;
static pid_t live[MAX_LIVE]; /* children spawned since the last reap_children */
static int nlive;

int free_port(void)
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

/* environ without the child_env_drop variables, then env; into envp (MAX_ENV). */
static void child_environment(const char **envp, const char *const *env)
{
  size_t drop = child_env_drop ? strlen(child_env_drop) : 0;
  int e = 0;
  for (char **p = environ; *p && e < MAX_ENV - 64; p++)
    if (!drop || strncmp(*p, child_env_drop, drop) != 0)
      envp[e++] = *p;
  for (int i = 0; env && env[i]; i++) {
    assert_true(e < MAX_ENV - 1);
    envp[e++] = env[i];
  }
  envp[e] = NULL;
}

/* Signals this test ignores or blocks (SIGPIPE, say) at their defaults in the child. */
static void default_signals(posix_spawnattr_t *attr)
{
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(attr, &none);
  posix_spawnattr_setsigdefault(attr, &defaults);
  posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

pid_t spawn_child(const char *const *args, const char *const *env, int stdin_fd,
                  const char *log)
{
  const char *argv[MAX_ARGV] = {app_bin};
  int n = 1;
  for (; args && args[n - 1]; n++) {
    assert_true(n < MAX_ARGV - 1);
    argv[n] = args[n - 1];
  }
  argv[n] = NULL;
  const char *envp[MAX_ENV];
  child_environment(envp, env);
  int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  if (stdin_fd >= 0)
    posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
  else
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fd, 1);
  posix_spawn_file_actions_adddup2(&fa, fd, 2);
  posix_spawnattr_init(&attr);
  default_signals(&attr);
  pid_t pid = -1;
  if (posix_spawn(&pid, app_bin, &fa, &attr, (char **)argv, (char **)envp) != 0)
    pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(fd);
  assert_true(pid > 0);
  if (nlive < MAX_LIVE)
    live[nlive++] = pid;
  return pid;
}

void spawn_daemon_into(struct daemon *d, const char *name, const char *const *args,
                       const char *const *env, int stdin_fd)
{
  static int runs;
  snprintf(d->log, sizeof d->log, "%s/%s-%d.log", tmp_dir, name, runs++);
  d->status = 0;
  d->reaped = false;
  d->spawned = mono_ms();
  d->pid = spawn_child(args, env, stdin_fd, d->log);
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

bool wait_exit(struct daemon *d, int timeout_ms)
{
  int64_t end = mono_ms() + timeout_ms, next_poke = mono_ms() + 100;
  while (!d->reaped) {
    if (waitpid(d->pid, &d->status, WNOHANG) == d->pid) {
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

int wait_exit_code(struct daemon *d, int timeout_ms)
{
  if (!wait_exit(d, timeout_ms)) {
    kill_daemon(d);
    dump_log(d);
    const char *name = strrchr(app_bin, '/');
    fail_msg("%s did not exit within %d ms", name ? name + 1 : app_bin, timeout_ms);
  }
  return WIFEXITED(d->status) ? WEXITSTATUS(d->status) : -1;
}

/* A signal to the child, process-directed as an operator's kill(1) would send it. (An
 * earlier version sent it under TSan to the one thread waiting in epoll, when weft's idle
 * threads parked in raw futex waits that TSan does not see; they now pass through an
 * intercepted call every 10 ms, and the thread-directed signal was itself once lost.) */
void send_signal(pid_t pid, int sig)
{
  kill(pid, sig);
}

void kill_daemon(struct daemon *d)
{
  if (d->pid > 0 && !d->reaped) {
    kill(d->pid, SIGKILL);
    wait_exit(d, 10000);
  }
}

void dump_log(const struct daemon *d)
{
  char *s = slurp(d->log);
  size_t n = strlen(s);
  const char *name = strrchr(app_bin, '/');
  fprintf(stderr, "---- %s output (last 16000 bytes):\n%s\n----\n", name ? name + 1 : app_bin,
          n > 16000 ? s + n - 16000 : s);
  free(s);
}

void reap_children(void)
{
  for (int i = 0; i < nlive; i++)
    if (waitpid(live[i], NULL, WNOHANG) == 0) {
      kill(live[i], SIGKILL);
      waitpid(live[i], NULL, 0);
    }
  nlive = 0;
}
