/* fixture.h: what every app test needs around its children: the built binary, a fresh
 * temporary directory, time, and whole files.
 *
 * The app tests (tests/apps/test_*.c) are plain programs, not weft ones: everything in
 * tests/apps/harness/ runs on the test's own threads with blocking calls, and the helpers
 * that check (app_find_bin's callers, app_make_tmp_dir) fail the cmocka test, so they may
 * only be called from the test's thread. */
#ifndef APP_HARNESS_FIXTURE_H
#define APP_HARNESS_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

/* A NULL-terminated argument or environment list. */
#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

extern char app_bin[4400]; /* the binary under test (app_find_bin) */
extern char tmp_dir[256];  /* this test's temporary directory (app_make_tmp_dir) */

/* Set app_bin to $env_var when that is set and non-empty, else to rel_path (e.g.
 * "apps/paymentd/paymentd") under the build directory (the parent of the one this test
 * program is in). True when app_bin is executable. Any thread. */
bool app_find_bin(const char *env_var, const char *rel_path);
/* Make tmp_dir, a fresh $TMPDIR/weft-<name>-XXXXXX (default /tmp); fails the test when it
 * cannot. The test's thread. */
void app_make_tmp_dir(const char *name);
/* Remove tmp_dir and everything below it (nothing when it was not made). */
void app_remove_tmp_dir(void);

int64_t mono_ms(void);
void sleep_ms(int ms); /* resumes after EINTR */
/* A file's contents, NUL-terminated (malloc'd; "" when unreadable). Any thread. */
char *slurp(const char *path);

#endif
