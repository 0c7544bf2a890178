// bench_rerank: seconds per training epoch of DLCM and PRM on MovieLens-100K (kar lists, default
// preparation), without knowledge and with profile knowledge (GloVe user + item vectors), and the
// throughput of batched reward scoring (lists per second). Beside each training it runs the peer,
// KAR's rerankers as KAR's PyTorch code writes them (bench/peer/rerank_epoch.py, Debian's
// /usr/bin/python3 with python3-torch), on the same training lists, knowledge vectors, epochs and
// threads, and prints the ratio of training lists per second (fp32 against the peer's fp32; the
// peer always runs fp32, so a bf16 row's ratio is an extra, not the comparison).
//   usage: bench_rerank [epochs=2] [threads=1] [device=cpu] [dtype=fp32] [setting=kar] [--no-peer]
//          [--models dlcm,prm] [--knowledge none,profile] [--profile DIR]
// --profile DIR: after each row's timing, one more epoch of training under libtorch's profiler; its
// chrome trace goes to DIR and the operators are printed by self time.
// threads: intra-op threads of the one training timed at a time (the library's default is 1 on
// CPU: see RerankTrainConfig::threads). dtype bf16: mixed-precision matmuls (RerankTrainConfig::dtype).
#include <ATen/ATen.h>
#include <cstdint>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "peer.h"
#include "profile.h"

#include "data/dataset.h"
#include "data/prepare.h"
#include "rerank/knowledge_vectors.h"
#include "rerank/reranker.h"
#include "util/files.h"
#include "util/strings.h"
#include "util/log.h"
#include "runtime/runtime.h"

using namespace rlrf;

namespace {

template <typename T>
void write_array(const std::filesystem::path& path, const std::vector<T>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
  if (!f) throw std::runtime_error("cannot write " + path.string());
}

void write_tensor(const std::filesystem::path& path, const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous();
  write_array(path, std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel()));
}

// The peer's inputs: the training lists of the prepared data's list size, the item attribute
// table [items, attributes] and the knowledge vectors, as raw arrays with a meta.json.
size_t write_peer_inputs(const std::filesystem::path& dir, const PreparedData& data, const KnowledgeVectors& kv) {
  const Dataset& ds = data.dataset;
  std::vector<int64_t> items, users, attrs;
  std::vector<float> labels;
  const size_t size = data.lists[static_cast<size_t>(lists_of_split(data, Split::kTrain).at(0))].items.size();
  size_t n = 0;
  for (int64_t li : lists_of_split(data, Split::kTrain)) {
    const RerankList& l = data.lists[static_cast<size_t>(li)];
    if (l.items.size() != size) continue;
    ++n;
    users.push_back(l.user);
    for (size_t j = 0; j < size; ++j) {
      items.push_back(l.items[j]);
      labels.push_back(l.labels[j] > 0 ? 1.0f : 0.0f);
    }
  }
  for (size_t i = 0; i < ds.items.size(); ++i)
    for (const auto& a : ds.item_attributes) attrs.push_back(a[i]);
  write_array(dir / "items.bin", items);
  write_array(dir / "users.bin", users);
  write_array(dir / "labels.bin", labels);
  write_array(dir / "item_attributes.bin", attrs);
  write_tensor(dir / "user_vectors.bin", kv.user);
  write_tensor(dir / "item_vectors.bin", kv.item);
  nlohmann::json meta = {{"n_lists", n},
                         {"list_size", size},
                         {"n_items", ds.items.size()},
                         {"n_users", kv.user.size(0)},
                         {"user_dim", kv.user.size(1)},
                         {"item_dim", kv.item.size(1)},
                         {"attribute_cardinality", ds.attribute_cardinality}};
  std::ofstream(dir / "meta.json") << meta.dump();
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args;
  bool peer = true;
  std::string models = "dlcm,prm", knowledge = "none,profile", profile_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-peer") peer = false;
    else if ((a == "--models" || a == "--knowledge") && i + 1 < argc) (a == "--models" ? models : knowledge) = argv[++i];
    else if (a == "--profile" && i + 1 < argc) profile_dir = argv[++i];
    else args.push_back(a);
  }
  auto arg = [&](size_t i, const char* fallback) { return i < args.size() ? args[i] : std::string(fallback); };
  const int epochs = std::stoi(arg(0, "2"));
  init_threads();
  const int threads = std::stoi(arg(1, "1"));
  const std::string device = arg(2, "cpu");
  const std::string dtype = arg(3, "fp32");
  const std::string setting = arg(4, "kar");
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
    const std::filesystem::path peer_dir = fresh_temp_dir("bench_rerank_peer");
    if (peer) std::printf("peer: %zu training lists of the list size\n", write_peer_inputs(peer_dir, data, kv));
    for (const std::string_view model_name : split(models, ",")) {
      const std::string model(model_name);
      for (const std::string_view kind : split(knowledge, ",")) {
        const bool with = kind == "profile";
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
        const double lists_per_s = static_cast<double>(n_train) * n / train;
        std::printf("%-4s %-26s %7.2f s/epoch training (%.2f s with validation), %.0f lists/s\n", model.c_str(),
                    with ? "with profile knowledge" : "without knowledge", train / n, total / n, lists_per_s);
        if (!profile_dir.empty()) {
          std::filesystem::create_directories(profile_dir);
          const std::filesystem::path trace =
              std::filesystem::path(profile_dir) / fmt::format("rerank_{}_{}_{}.json", model, with ? "profile" : "none", dtype);
          {
            RerankTrainConfig one = c;
            one.epochs = one.patience = 1;
            torch::autograd::profiler::RecordProfile guard(trace.string());
            train_reranker(data, k, one);
          }
          print_self_times(trace, 18);
        }
        if (peer) {
          const std::string cmd =
              fmt::format("/usr/bin/python3 {}/bench/peer/rerank_epoch.py {} --model {} --knowledge {} --epochs {} --threads {}",
                          RLRF_SOURCE_DIR, peer_dir.string(), model, with ? 1 : 0, epochs, threads);
          std::istringstream lines(run_peer(cmd));
          double seconds = 0, lists = 0;
          for (std::string line; std::getline(lines, line);) {
            nlohmann::json j = nlohmann::json::parse(line);
            seconds += j.at("seconds").get<double>();
            lists += j.at("lists").get<double>();
          }
          std::printf("%-4s %-26s peer (KAR's PyTorch, fp32): %.0f lists/s; rlrf4rec/peer %.2fx\n", model.c_str(),
                      with ? "with profile knowledge" : "without knowledge", lists / seconds,
                      lists_per_s / (lists / seconds));
        }
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
          std::printf("%-4s reward scoring: %zu candidates, %lld lists in %.2f s (%.0f lists/s)\n", model.c_str(), users.size(),
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
