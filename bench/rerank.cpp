// bench_rerank: seconds per training epoch of DLCM and PRM on MovieLens-100K (kar lists, default
// preparation), without knowledge and with profile knowledge (GloVe user + item vectors), and the
// throughput of batched reward scoring (lists per second).
//   usage: bench_rerank [epochs=2] [threads=1] [device=cpu] [dtype=fp32] [setting=kar]
// threads: intra-op threads of the one training timed at a time (the library's default is 1 on
// CPU: see RerankTrainConfig::threads). dtype bf16: mixed-precision matmuls (RerankTrainConfig::dtype).
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data/dataset.h"
#include "data/prepare.h"
#include "rerank/knowledge_vectors.h"
#include "rerank/reranker.h"
#include "util/files.h"
#include "util/log.h"
#include "runtime/runtime.h"

using namespace rlrf;

int main(int argc, char** argv) {
  const int epochs = argc > 1 ? std::atoi(argv[1]) : 2;
  init_threads();
  const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
  const std::string device = argc > 3 ? argv[3] : "cpu";
  const std::string dtype = argc > 4 ? argv[4] : "fp32";
  const std::string setting = argc > 5 ? argv[5] : "kar";
  try {
    PrepareConfig pc;
    pc.setting = setting;
    Dataset ds = load_dataset("ml-100k", data_dir());
    PreparedData data = prepare(ds, pc);
    KnowledgeSource src;
    src.user = "profile";
    src.item = "metadata";
    src.cache_dir = fresh_temp_dir("bench_rerank_cache");
    auto t0 = std::chrono::steady_clock::now();
    KnowledgeVectors kv = build_knowledge_vectors(data, src);
    const double enc = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const size_t n_train = lists_of_split(data, Split::kTrain).size();
    std::printf("ml-100k (%s lists): %zu train lists, batch 64, %d threads, device %s, %s; encoding %lld users + %lld items: %.2f s\n",
                setting.c_str(), n_train, threads, device.c_str(), dtype.c_str(), static_cast<long long>(kv.user.size(0)),
                static_cast<long long>(kv.item.size(0)), enc);
    for (const char* model : {"dlcm", "prm"}) {
      for (bool with : {false, true}) {
        RerankTrainConfig c;
        c.model = model;
        c.epochs = epochs;
        c.patience = epochs;
        c.device = device;
        c.threads = threads;
        c.dtype = dtype;
        KnowledgeVectors k = with ? kv : KnowledgeVectors{};
        Reranker r = train_reranker(data, k, c);
        double train = 0, total = 0;
        for (const EpochLog& e : r.history) {
          train += e.train_seconds;
          total += e.seconds;
        }
        const double n = static_cast<double>(r.history.size());
        std::printf("%-4s %-26s %7.2f s/epoch training (%.2f s with validation), %.0f lists/s\n", model,
                    with ? "with profile knowledge" : "without knowledge", train / n, total / n,
                    static_cast<double>(n_train) * n / train);
        if (with) {
          // Reward scoring: 4 candidate vectors for every training user.
          std::vector<int32_t> users;
          for (const UserSequence& s : data.sequences)
            if (s.split == Split::kTrain)
              for (int i = 0; i < 4; ++i) users.push_back(s.user);
          at::Tensor cands = kv.user.index_select(0, at::tensor(std::vector<int64_t>(users.begin(), users.end()), at::kLong));
          auto t1 = std::chrono::steady_clock::now();
          auto rw = knowledge_reward_metrics(r, data, kv, users, cands);
          const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
          int64_t lists = 0;
          for (const auto& m : rw) lists += m.count;
          std::printf("%-4s reward scoring: %zu candidates, %lld lists in %.2f s (%.0f lists/s)\n", model, users.size(),
                      static_cast<long long>(lists), s, static_cast<double>(lists) / s);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
