// Tests of the compute runtime: jobs in worker processes (run_isolated), the row-major BLAS call.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>

#include "runtime/row_gemm.h"
#include "runtime/runtime.h"
#include "util/error.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <vector>

using namespace rlrf;

TEST(RunIsolated, HandsEveryResultBackOnce) {
  std::vector<int> seen(7, 0);
  std::vector<std::string> got(7);
  run_isolated(7, 3, [](int64_t i) { return std::string(static_cast<size_t>(100000 * i), 'a') + std::to_string(i * i); },
               [&](int64_t i, const std::string& r) {
                 ++seen[static_cast<size_t>(i)];
                 got[static_cast<size_t>(i)] = r;
               });
  for (int64_t i = 0; i < 7; ++i) {
    EXPECT_EQ(seen[static_cast<size_t>(i)], 1) << i;
    EXPECT_EQ(got[static_cast<size_t>(i)], std::string(static_cast<size_t>(100000 * i), 'a') + std::to_string(i * i));
  }
}

TEST(RunIsolated, AJobsErrorNamesItAndKeepsWhatFinished) {
  std::vector<int64_t> finished;
  try {
    run_isolated(
        6, 2,
        // Jobs 0 and 1 start together (2 workers); job 1 fails at once while job 0 still runs.
        // Whatever the machine's load, job 0 finishes and is handed back and no later job starts.
        [](int64_t i) -> std::string {
          if (i == 1) throw Error("bad input in list 17");
          ::usleep(300000);
          return "late";
        },
        [&](int64_t i, const std::string&) { finished.push_back(i); },
        [](int64_t i) { return "training " + std::to_string(i); });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad input in list 17"), std::string::npos) << e.what();
  }
  std::sort(finished.begin(), finished.end());
  EXPECT_EQ(finished, (std::vector<int64_t>{0}));  // 2..5 never started
}

TEST(RunIsolated, AWorkerKilledByASignalIsAnErrorNamingTheJob) {
  try {
    run_isolated(
        2, 2,
        [](int64_t i) -> std::string {
          if (i == 1) {
            std::signal(SIGSEGV, SIG_DFL);  // the default action even where a sanitizer installed a handler
            std::raise(SIGSEGV);
          }
          return "ok";
        },
        [](int64_t, const std::string&) {}, [](int64_t i) { return "kar lists / profile / dlcm / seed " + std::to_string(i); });
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("kar lists / profile / dlcm / seed 1"), std::string::npos) << m;
    EXPECT_NE(m.find("signal 11"), std::string::npos) << m;
  }
}

// gemm_rows (the process's cblas_sgemm, row-major) against at::mm: both layouts of b, beta 0 over
// garbage in c and beta 1 accumulating, leading dimensions wider than the rows (column blocks).
TEST(RowGemm, MatchesATenMatmul) {
  at::manual_seed(3);
  const int64_t m = 5, n = 7, k = 3;
  const at::Tensor a = at::randn({m, k + 2}).narrow(1, 1, k);   // lda k + 2
  const at::Tensor b = at::randn({k, n + 1}).narrow(1, 0, n);   // ldb n + 1
  const at::Tensor bt = at::randn({n, k + 3}).narrow(1, 2, k);  // b^T with ldb k + 3
  for (bool trans : {false, true}) {
    const at::Tensor want_ab = at::mm(a, trans ? bt.t() : b);
    at::Tensor c = at::full({m, n + 4}, NAN);  // ldc n + 4; beta 0 must not read the NaNs
    const at::Tensor& rhs = trans ? bt : b;
    gemm_rows(trans, m, n, k, 2.0f, a.data_ptr<float>(), a.stride(0), rhs.data_ptr<float>(), rhs.stride(0), 0.0f,
              c.data_ptr<float>(), c.stride(0));
    EXPECT_LT((c.narrow(1, 0, n) - 2 * want_ab).abs().max().item<float>(), 1e-5) << "trans_b " << trans;
    gemm_rows(trans, m, n, k, 1.0f, a.data_ptr<float>(), a.stride(0), rhs.data_ptr<float>(), rhs.stride(0), 1.0f,
              c.data_ptr<float>(), c.stride(0));
    EXPECT_LT((c.narrow(1, 0, n) - 3 * want_ab).abs().max().item<float>(), 1e-5) << "trans_b " << trans << ", beta 1";
    EXPECT_TRUE(c.narrow(1, n, 4).isnan().all().item<bool>()) << "wrote past n columns";
  }
}
