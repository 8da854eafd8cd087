/* A minimal test harness for the libcomet tests: check() records, report() sums up. */
#ifndef COMET_TEST_H
#define COMET_TEST_H

#include <stdarg.h>
#include <stdio.h>

static _Atomic int test_passed, test_failed;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void check(int ok, const char *what, ...) {
        va_list ap;
        va_start(ap, what);
        fprintf(stderr, ok ? "  ok    " : "  FAIL  ");
        vfprintf(stderr, what, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        if (ok)
                test_passed++;
        else
                test_failed++;
}

/* Prints "NAME: N passed, M failed" and returns the exit status. */
static int report(const char *name) {
        printf("%s: %d passed, %d failed\n", name, test_passed, test_failed);
        return test_failed ? 1 : 0;
}

#endif
