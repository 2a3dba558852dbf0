/* test_collect_example.c: examples/collect/, the crawler story's bug next to its fix.
 *
 * collect_buggy closes the results channel while fetchers still send: each late send gets
 * -EPIPE, the program says which result was lost and exits 1 (no crash, no signal).
 * collect_fixed (one collector owns the channel; it is closed after every sender is done)
 * exits 0 with exactly one result per fetcher. Both run as a user would, in a child
 * process; a build without examples skips. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "weft_test.h"

static char *run(const char *name, const char *const *args, int *status)
{
  char *out = run_example(name, args, 60000, status);
  if (!out)
    skip();
  return out;
}

static int count(const char *s, const char *needle)
{
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

static void test_buggy_fails_clearly(void **state)
{
  (void)state;
  int status = 0;
  const char *const args[] = {"20", "200", NULL}; /* fetchers 3, 7, 11, 15, 19 are slow */
  char *out = run("collect/collect_buggy", args, &status);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
    fprintf(stderr, "collect_buggy: status %d, output:\n%s\n", status, out);
  assert_true(WIFEXITED(status)); /* an error, not a crash */
  assert_int_equal(WEXITSTATUS(status), 1);
  assert_non_null(strstr(out, "send on closed channel: result of fetcher 7 lost (EPIPE)"));
  assert_int_equal(count(out, "send on closed channel: result of fetcher"), 5);
  assert_non_null(strstr(out, "5 lost to sends on a closed channel"));
  free(out);
}

static void test_fixed_collects_everything(void **state)
{
  (void)state;
  int status = 0;
  const char *const args[] = {"40", "200", NULL};
  char *out = run("collect/collect_fixed", args, &status);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "collect_fixed: status %d, output:\n%s\n", status, out);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_null(strstr(out, "closed channel"));
  /* One line per fetcher: 30 fast ones done, the 10 slow ones cancelled at the deadline. */
  for (int i = 0; i < 40; i++) {
    char line[64];
    snprintf(line, sizeof line, "fetcher %d: ", i);
    int n = 0;
    for (const char *p = out; (p = strstr(p, line)) != NULL; p += strlen(line))
      n += p == out || p[-1] == '\n';
    assert_int_equal(n, 1);
  }
  assert_int_equal(count(out, "cancelled at the deadline (ETIMEDOUT)"), 10);
  assert_non_null(strstr(out, "all 40 results collected (30 done, 10 cancelled"));
  free(out);
}

/* Many fetchers, a deadline that cuts through the middle of them: still none lost. */
static void test_fixed_many(void **state)
{
  (void)state;
  int status = 0;
  const char *const args[] = {"5000", "5", NULL};
  char *out = run("collect/collect_fixed", args, &status);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "collect_fixed 5000: status %d, output tail:\n%s\n", status,
            strlen(out) > 2000 ? out + strlen(out) - 2000 : out);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_non_null(strstr(out, "all 5000 results collected"));
  free(out);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_buggy_fails_clearly),
      cmocka_unit_test(test_fixed_collects_everything),
      cmocka_unit_test(test_fixed_many),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
