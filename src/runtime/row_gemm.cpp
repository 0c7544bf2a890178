// Row-major fp32 matmul through the process's BLAS (row_gemm.h).
#include "runtime/row_gemm.h"

#include <ATen/ATen.h>
#include <dlfcn.h>

namespace rlrf {
namespace {

// CBLAS's enums (cblas.h): row-major 101, no transpose 111, transpose 112.
using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);

Sgemm find_sgemm() {
  static const Sgemm fn = reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "cblas_sgemm"));
  return fn;
}

}  // namespace

void gemm_rows(bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
               int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (const Sgemm sgemm = find_sgemm()) {
    sgemm(101, 111, trans_b ? 112 : 111, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
          static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
    return;
  }
  const at::Tensor ta = at::from_blob(const_cast<float*>(a), {m, k}, {lda, 1}, at::kFloat);
  const at::Tensor tb = trans_b ? at::from_blob(const_cast<float*>(b), {n, k}, {ldb, 1}, at::kFloat).t()
                                : at::from_blob(const_cast<float*>(b), {k, n}, {ldb, 1}, at::kFloat);
  at::Tensor tc = at::from_blob(c, {m, n}, {ldc, 1}, at::kFloat);
  if (beta == 0.0f) tc.zero_();
  tc.addmm_(ta, tb, beta == 0.0f ? 1.0f : beta, alpha);
}

}  // namespace rlrf
