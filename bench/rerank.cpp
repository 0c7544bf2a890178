// bench_rerank: seconds per training epoch of DLCM and PRM on MovieLens-100K (kar lists, default
// preparation), without knowledge and with profile knowledge (GloVe user + item vectors), and the
// throughput of batched reward scoring (lists per second). Beside each training it runs the peer,
// KAR's rerankers as KAR's PyTorch code writes them (bench/peer/rerank_epoch.py, Debian's
// /usr/bin/python3 with python3-torch), on the same training lists, knowledge vectors, epochs and
// threads, and prints the ratio of training lists per second (fp32 against the peer's fp32; the
// peer always runs fp32, so a bf16 row's ratio is an extra, not the comparison).
//   usage: bench_rerank [epochs=2] [threads=1] [device=cpu] [dtype=fp32] [setting=kar] [--no-peer]
//          [--models dlcm,prm] [--knowledge none,profile] [--profile DIR]
// Each row also prints its model FLOPs per epoch (ours and the peer's, counted from the shapes:
// epoch_flops), the GFLOP/s they run at as a share of the square-matmul rate at the same threads and
// dtype, and what 3x the peer's lists/s would ask of that rate.
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
#include <random>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "matmul_rate.h"
#include "peer.h"
#include "profile.h"

#include "data/dataset.h"
#include "data/prepare.h"
#include "rerank/batches.h"
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

// Model FLOPs of one training epoch (forward and backward; a multiply-add is 2), counted from the
// shapes: rlrf4rec's (each batch's distinct users and items through the adapter; a piece of the
// scorer's input drawn from a table with fewer rows than the batch has slots projected once per
// table row, slot_input.h) and the peer's (KAR's code: the user tower once per list, the item tower
// on every slot, the first layers on the concatenated rows). The batches are those of the
// trainer's first epoch (its shuffling stream, length_batches).
struct EpochFlops {
  double ours = 0, peer = 0;
};

EpochFlops epoch_flops(const PreparedData& data, const RerankerShape& s, const RerankTrainConfig& c) {
  const double E = static_cast<double>(s.embed_dim), K = static_cast<double>(s.expert_out);
  const double D = static_cast<double>(s.input_dim());
  const double X = static_cast<double>(s.shared_experts + s.specific_experts), Hx = static_cast<double>(s.expert_hidden);
  const double V = static_cast<double>(s.user_dim > 0 ? s.user_dim : s.item_dim);
  // An adapter tower on n rows: layer 1 with the gate, forward and weight gradient (the knowledge
  // vectors are frozen: no input gradient); layer 2 forward, weight gradient and input gradient.
  auto tower = [&](double n) { return 2 * (2 * n * V * X * (Hx + 1)) + 3 * (2 * n * X * Hx * K); };
  const bool dlcm = s.model == "dlcm";
  const double H = static_cast<double>(s.gru_hidden);
  const double H1 = static_cast<double>(s.prm_mlp.empty() ? 1 : s.prm_mlp.front());
  const double first_out = dlcm ? 3 * H : 3 * D + H1;  // columns the input rows are projected to
  std::mt19937_64 rng(static_cast<uint64_t>(c.seed) * 0x9E3779B97F4A7C15ULL + 1);  // the trainer's stream
  const std::vector<int64_t> train = lists_of_split(data, Split::kTrain);
  EpochFlops f;
  for (const std::vector<int64_t>& ps : length_batches(data, train, c.batch, &rng)) {
    std::vector<int64_t> ls;
    for (int64_t p : ps) ls.push_back(train[static_cast<size_t>(p)]);
    const Batch b = make_batch(data, ls);
    const double B = static_cast<double>(b.items.size(0)), L = static_cast<double>(b.items.size(1)), S = B * L;
    auto distinct = [](const at::Tensor& t) { return static_cast<double>(std::get<0>(at::_unique2(t)).numel()); };
    // The input's pieces: (rows projected, columns, whether the rows take a gradient).
    auto piece = [&](double table_rows, double cols, bool grad) {
      return (grad ? 3 : 2) * 2 * std::min(table_rows, S) * cols * first_out;
    };
    double ours = piece(static_cast<double>(s.n_items), E, true), peer = (dlcm ? 3 * 2 * S * D * 3 * H : 0);
    for (int64_t card : s.attribute_cardinality) ours += piece(static_cast<double>(card), E, true);
    if (s.user_dim > 0) {
      const double users = distinct(b.users);
      ours += tower(users) + piece(users, K, true);
      peer += tower(B);
    }
    if (s.item_dim > 0) {
      const double items = distinct(b.items);
      ours += tower(items) + piece(items, K, true);
      peer += tower(S);
    }
    double rest = 0;  // the same on both sides
    if (dlcm) {
      rest = 3 * (2 * S * H * 3 * H + 2 * B * H * H + 2 * S * H * 2);  // recurrence, fc1, fc2
    } else {
      ours += piece(L, D, false);                                          // the positions
      peer += 3 * (2 * S * D * 3 * D + 2 * S * D * H1);                    // in-projection, MLP layer 1 on h
      rest = 3 * (2 * S * L * D * 2 + 2 * S * D * D + 2 * S * D * H1);    // attention, out-projection, layer 1 on it
      double w = H1;
      for (size_t i = 1; i < s.prm_mlp.size(); ++i) {
        rest += 3 * 2 * S * w * static_cast<double>(s.prm_mlp[i]);
        w = static_cast<double>(s.prm_mlp[i]);
      }
      rest += 3 * 2 * S * w;  // fc_out
    }
    f.ours += ours + rest;
    f.peer += peer + rest;
  }
  return f;
}

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
    double rate = 0;  // the machine's matmul GFLOP/s at the rows' threads and dtype
    {
      ScopedThreads st(threads);
      rate = square_matmul_gflops(1024, dtype == "bf16" ? at::kBFloat16 : at::kFloat);
    }
    std::printf("square 1024 matmul, %s, %d threads: %.1f GFLOP/s\n", dtype.c_str(), threads, rate);
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
        const EpochFlops flops = epoch_flops(data, r.shape, c);
        const double ours_gflops = flops.ours * lists_per_s / static_cast<double>(n_train) / 1e9;
        std::printf("%-4s %-26s model FLOPs per epoch %.1f G (the peer's: %.1f G); %.1f GFLOP/s, %.1f%% of the matmul rate\n",
                    model.c_str(), "", flops.ours / 1e9, flops.peer / 1e9, ours_gflops, 100 * ours_gflops / rate);
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
          const double peer_lists_per_s = lists / seconds;
          std::printf("%-4s %-26s peer (KAR's PyTorch, fp32): %.0f lists/s; rlrf4rec/peer %.2fx\n", model.c_str(),
                      with ? "with profile knowledge" : "without knowledge", peer_lists_per_s,
                      lists_per_s / peer_lists_per_s);
          // What 3x the peer's lists/s asks of rlrf4rec's own FLOPs: GFLOP/s and share of the rate.
          const double need = 3 * peer_lists_per_s * flops.ours / static_cast<double>(n_train) / 1e9;
          const double peer_gflops = flops.peer * peer_lists_per_s / static_cast<double>(n_train) / 1e9;
          std::printf("%-4s %-26s peer at %.1f GFLOP/s (%.1f%% of the rate); 3x the peer needs %.1f GFLOP/s here (%.0f%%)\n",
                      model.c_str(), "", peer_gflops, 100 * peer_gflops / rate, need, 100 * need / rate);
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
