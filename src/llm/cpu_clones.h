// RLRF_CPU_CLONES: compile a vectorised loop for three x86-64 levels and let the CPU choose one at
// load time (gcc's function multi-versioning); other compilers and CPUs build the portable version.
// Used by the plain-C++ kernels (single_stream_kernel.cpp, attention_softmax.cpp, cpu_attention.cpp).
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define RLRF_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RLRF_CPU_CLONES
#endif
