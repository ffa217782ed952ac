#pragma once
// QNAS_VECTOR_CLONES marks an element loop to be compiled for AVX-512, AVX2 and the baseline x86-64; the
// loader picks the widest this CPU runs (GCC's target_clones), so one Debian build uses the whole vector unit
// wherever it runs. Out of line on purpose: GCC vectorises these loops alone, not once inlined. Where a clone
// must round exactly as a reference, build its file with -ffp-contract=off (the AVX-512 clone would fuse
// multiply-adds).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define QNAS_VECTOR_CLONES [[gnu::noinline, gnu::target_clones("avx512f", "avx2", "default")]]
#else
#define QNAS_VECTOR_CLONES [[gnu::noinline]]
#endif
