/* child.h: the app under test as a child process.
 *
 * A child runs app_bin (fixture.h) with its stdout and stderr in a log file, stdin from a
 * given fd or /dev/null, and SIGINT, SIGTERM and SIGPIPE at their defaults whatever this
 * test ignores. Every child spawned is remembered until reap_children, which kills those
 * still running: a teardown calls it so that no child outlives its test, even after a
 * failed check. Every wait has a deadline. The test's thread only (the list of children
 * is not locked). */
#ifndef APP_HARNESS_CHILD_H
#define APP_HARNESS_CHILD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum { MAX_ARGV = 64 };

struct daemon {
  pid_t pid;
  int port;        /* its loopback HTTP port, 0 when unknown (wait_exit pokes it) */
  char log[512];   /* its stdout and stderr */
  int status;      /* wait status once reaped */
  bool reaped;     /* waited for: pid is no longer ours */
  int64_t spawned; /* mono_ms() just before the spawn */
};

/* Inherited environment variables whose names start with this prefix are not passed to
 * children (NULL: all are); e.g. "PAYMENTD_", so that the test's own settings do not
 * leak into the flags under test. */
extern const char *child_env_drop;

/* Spawn app_bin with args (after the program name) and env additions ("NAME=VALUE"),
 * both NULL-terminated or NULL; stdin from stdin_fd (-1: /dev/null), output to log.
 * Fails the test when it cannot spawn. */
pid_t spawn_child(const char *const *args, const char *const *env, int stdin_fd,
                  const char *log);
/* spawn_child into d: d's log is tmp_dir/<name>-<n>.log, d->spawned the time. */
void spawn_daemon_into(struct daemon *d, const char *name, const char *const *args,
                       const char *const *env, int stdin_fd);
/* Wait at most timeout_ms for the child; true when it exited (status in d). Under TSan it
 * connects to d->port every 100 ms meanwhile (see poke in child.c). */
bool wait_exit(struct daemon *d, int timeout_ms);
/* Wait at most timeout_ms for d to exit; its exit code, or -1 when a signal ended it.
 * Past timeout_ms it is killed, its log dumped and the test failed. */
int wait_exit_code(struct daemon *d, int timeout_ms);
/* A signal to the child (under TSan, to its polling thread: see the definition). */
void send_signal(pid_t pid, int sig);
/* SIGKILL and reap (nothing when already reaped). */
void kill_daemon(struct daemon *d);
/* The last 16000 bytes of d's log on stderr. */
void dump_log(const struct daemon *d);
/* Kill and reap every child still running; for teardowns. */
void reap_children(void);
/* A free loopback port: bound to port 0, read back, closed. */
int free_port(void);

#endif
