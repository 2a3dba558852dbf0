/* metrics_process.c: the process's metrics, as Go's process collector computes them
 * (prometheus/client_golang's process_collector_procfsenabled.go via prometheus/procfs):
 *   process_cpu_seconds_total       (utime + stime) / clock ticks, /proc/self/stat
 *   process_open_fds                entries of /proc/self/fd
 *   process_max_fds                 the soft RLIMIT_NOFILE ("Max open files")
 *   process_virtual_memory_bytes    vsize, /proc/self/stat
 *   process_resident_memory_bytes   rss pages * page size, /proc/self/stat
 *   process_start_time_seconds      btime of /proc/stat + starttime / clock ticks
 * A file that cannot be read leaves its metrics out of the scrape, as Go does. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "obs/metrics_internal.h"

/* read_file: up to len - 1 bytes of path, NUL-terminated. Returns the length or -1. */
static ssize_t read_file(const char *path, char *buf, size_t len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t n = 0;
  for (ssize_t r; n < len - 1; n += (size_t)r)
    if ((r = read(fd, buf + n, len - 1 - n)) <= 0)
      break;
  close(fd);
  buf[n] = '\0';
  return (ssize_t)n;
}

/* The fields of /proc/self/stat we use, by their number in proc(5). */
struct proc_stat {
  double utime, stime; /* 14, 15: clock ticks */
  double starttime;    /* 22: clock ticks after boot */
  double vsize;        /* 23: bytes */
  double rss;          /* 24: pages */
};

static int read_stat(struct proc_stat *ps)
{
  char buf[1024];
  if (read_file("/proc/self/stat", buf, sizeof buf) <= 0)
    return -1;
  char *p = strrchr(buf, ')'); /* the command may hold spaces and parentheses */
  if (!p)
    return -1;
  double field[25] = {0};
  p++;
  for (int i = 3; i <= 24; i++) { /* field 3 (state) is a letter: strtod gives 0 */
    while (*p == ' ')
      p++;
    field[i] = strtod(p, NULL);
    p = strchr(p, ' ');
    if (!p)
      return i == 24 ? 0 : -1;
  }
  *ps = (struct proc_stat){field[14], field[15], field[22], field[23], field[24]};
  return 0;
}

static double boot_time(void)
{
  char buf[8192];
  if (read_file("/proc/stat", buf, sizeof buf) <= 0)
    return -1;
  char *p = strstr(buf, "\nbtime ");
  return p ? strtod(p + 7, NULL) : -1;
}

static long open_fds(void)
{
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  long n = 0;
  for (struct dirent *e; (e = readdir(d));)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void gauge(weft_metrics_emitter *em, const char *name, const char *help, double v)
{
  weft_metrics_emit(em, name, help, WEFT_METRIC_GAUGE, v, 0, NULL, NULL);
}

static void process_collect(weft_metrics_emitter *em, void *arg)
{
  (void)arg;
  double ticks = (double)sysconf(_SC_CLK_TCK);
  struct proc_stat ps;
  if (read_stat(&ps) == 0) {
    weft_metrics_emit(em, "process_cpu_seconds_total",
                      "Total user and system CPU time spent in seconds.", WEFT_METRIC_COUNTER,
                      (ps.utime + ps.stime) / ticks, 0, NULL, NULL);
    gauge(em, "process_virtual_memory_bytes", "Virtual memory size in bytes.", ps.vsize);
    gauge(em, "process_resident_memory_bytes", "Resident memory size in bytes.",
          ps.rss * (double)sysconf(_SC_PAGESIZE));
    double btime = boot_time();
    if (btime >= 0)
      gauge(em, "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            btime + ps.starttime / ticks);
  }
  long fds = open_fds();
  if (fds >= 0)
    gauge(em, "process_open_fds", "Number of open file descriptors.", (double)fds);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    gauge(em, "process_max_fds", "Maximum number of open file descriptors.",
          (double)rl.rlim_cur);
}

int weft_metrics_register_process(weft_metrics_registry *reg)
{
  return weft_metrics_register_collector(reg, process_collect, NULL);
}
