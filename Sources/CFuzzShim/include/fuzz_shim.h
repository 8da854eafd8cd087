#ifndef COMET_FUZZ_SHIM_H
#define COMET_FUZZ_SHIM_H
#include <stddef.h>
#include <stdint.h>

/* Runs libFuzzer's driver with `callback` as the target. Returns -1 when the binary was not
 * built with -sanitize=fuzzer (libFuzzer's driver is then absent). */
int comet_fuzz_run(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
