/*
 * fuzz_driver.h - what each fuzz harness provides to fuzz_driver.c: the
 * libFuzzer entry point, its seed corpus, and where the replay program's
 * own mutations may start in an input.
 */
#ifndef DKV_TESTS_FUZZ_DRIVER_H
#define DKV_TESTS_FUZZ_DRIVER_H

#include <stddef.h>

#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Calls fn for each seed input; returns their count, or -1. */
int fuzz_make_seeds(fimg_seed_fn fn, void *arg);

/* The first input byte the replay program's mutations may change. */
extern const size_t fuzz_mutate_from;

#endif /* DKV_TESTS_FUZZ_DRIVER_H */
