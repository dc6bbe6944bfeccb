/* check.h: the small assertion kit every C test program uses.
 *
 * A test program calls check_*() for each assertion; each prints one line,
 * "ok" or "FAIL" with where and why, and check_finish() prints the summary
 * "NAME: N passed, M failed" that tests/run_tests.sh adds up. Exit status
 * is 0 only when nothing failed and at least one check ran. */
#ifndef GRETA_TESTS_CHECK_H
#define GRETA_TESTS_CHECK_H

#include <stdbool.h>
#include <stdint.h>

/* Records one assertion. Use the CHECK* wrappers below for file:line. */
void check_record(bool ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prints the summary line and returns the process exit status. */
int check_finish(const char *program_name);

/* Number of failures so far (to stop a test early on a broken fixture). */
int check_failures(void);

/* A path under the build tree or the repository, resolved from the
 * environment: GRETA_REPO (default ".") and GRETA_BUILD (default "build"). */
const char *check_repo_dir(void);
const char *check_build_dir(void);

/* A fresh temporary directory for this test program (removed by the runner). */
const char *check_tmp_dir(void);

#define CHECK(cond, ...) check_record((cond), __FILE__, __LINE__, __VA_ARGS__)

#endif
