/* fixture.c: the binary under test, the temporary directory, time and files (see
 * fixture.h). */
#include "fixture.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weft_test.h"

char app_bin[4400];
char tmp_dir[256];

bool app_find_bin(const char *env_var, const char *rel_path)
{
  const char *env = env_var ? getenv(env_var) : NULL;
  if (env && *env) {
    snprintf(app_bin, sizeof app_bin, "%s", env);
    return access(app_bin, X_OK) == 0;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    return false;
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash)
    *slash = '\0';
  snprintf(app_bin, sizeof app_bin, "%s/../%s", self, rel_path);
  return access(app_bin, X_OK) == 0;
}

void app_make_tmp_dir(const char *name)
{
  const char *base = getenv("TMPDIR");
  snprintf(tmp_dir, sizeof tmp_dir, "%s/weft-%s-XXXXXX", base && *base ? base : "/tmp", name);
  assert_non_null(mkdtemp(tmp_dir));
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st, (void)flag, (void)ftw;
  if (remove(path) != 0)
    fprintf(stderr, "could not remove %s: %s\n", path, strerror(errno));
  return 0;
}

void app_remove_tmp_dir(void)
{
  if (!tmp_dir[0])
    return;
  /* depth first (children before their directory), not following links */
  nftw(tmp_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
  tmp_dir[0] = '\0';
}

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
