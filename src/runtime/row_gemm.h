// A row-major fp32 matmul straight to the BLAS libtorch itself calls (cblas_sgemm, found at run
// time), for loops of tiny matmuls such as a GRU's steps: ATen's per-call dispatch, views and
// checks cost a fair share of a 64 x 64 x 192 product. Without a cblas_sgemm in the process the
// same product goes through ATen.
#pragma once
#include <cstdint>

namespace rlrf {

// c [m, n] = alpha * a [m, k] op(b) + beta * c, all row-major with leading dimensions lda, ldb, ldc;
// op(b) = b [k, n], or b^T when trans_b (b then [n, k]). beta = 0 ignores c's contents.
void gemm_rows(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
               int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace rlrf
