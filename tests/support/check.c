/* check.c: implementation of tests/support/check.h. */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int checks_passed;
static int checks_failed;
static char tmp_dir[512];

void check_record(bool ok, const char *file, int line, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    if (ok) {
        checks_passed++;
        printf("ok   ");
    } else {
        checks_failed++;
        printf("FAIL %s:%d: ", file, line);
    }
    vprintf(fmt, args);
    printf("\n");
    va_end(args);
    fflush(stdout);
}

int check_failures(void) { return checks_failed; }

int check_finish(const char *program_name) {
    printf("%s: %d passed, %d failed\n", program_name, checks_passed, checks_failed);
    fflush(stdout);
    if (checks_failed > 0 || checks_passed == 0) return 1;
    return 0;
}

const char *check_repo_dir(void) {
    const char *dir = getenv("GRETA_REPO");
    return dir ? dir : ".";
}

const char *check_build_dir(void) {
    const char *dir = getenv("GRETA_BUILD");
    return dir ? dir : "build";
}

const char *check_tmp_dir(void) {
    if (tmp_dir[0]) return tmp_dir;
    const char *base = getenv("GRETA_TEST_TMP");
    if (!base) base = "/tmp";
    snprintf(tmp_dir, sizeof tmp_dir, "%s/greta-test-XXXXXX", base);
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        exit(2);
    }
    return tmp_dir;
}
