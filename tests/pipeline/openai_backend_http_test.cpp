// The generation stages through [generate] backend = "openai" against the real llama-server
// (scripts/build-llama-server.sh) with the demo model in gguf: every (user, sample) stored once, the
// server's refusal of n > 1 found out once, the same texts for the same seeds (with one request in
// flight; mostly with several, see below); `rlrf run` killed with SIGKILL mid-generation then rerun loses and duplicates
// nothing; the server killed mid-run is retried until it is back; config errors name the key.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "run_process.h"
#include "engine_server.h"
#include "pipeline/run_context.h"
#include "pipeline/run_store.h"
#include "pipeline/stages.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;
using namespace rlrf::test;
using rlrf::engine_test::FaultProxy;
using rlrf::engine_test::LlamaServer;

namespace {

constexpr int kSamples = 3;  // the default [reward] train_knowledge needs n >= 3

std::string config_text(const fs::path& dir, const std::string& url, int concurrency, int max_users = 4,
                        const std::string& extra = "") {
  return "[run]\ndir = \"" + dir.string() + "\"\nrounds = 0\nmax_users = " + std::to_string(max_users) + "\n" +
         "[prepare]\ndataset = \"ml-100k\"\n"
         "[model]\npath = \"{shared}/models/tinystories-656k\"\nchat_template = \"none\"\n"
         "[generate]\nn = " + std::to_string(kSamples) + "\nmax_new_tokens = 24\ntemperature = 2.0\nseed = 99\n"
         "backend = \"openai\"\nurl = \"" + url + "\"\nmodel = \"tinystories\"\nconcurrency = " +
         std::to_string(concurrency) + "\nmax_retries = 8\ntimeout_s = 20\n" + extra +
         "[knowledge]\nencoder = \"hash\"\n";
}

RunConfig parse(const std::string& text) { return RunConfig::from_file(ConfigFile::parse(text, "test.toml")); }

// temperature 2: the base model ends most of these (non-story) prompts at once at temperature 1;
// hotter, the samples differ and the comparisons of texts below mean something.

// (user, sample) -> text of a round's responses; fails on a duplicate.
std::map<std::pair<int32_t, int>, std::string> texts_of(const RunStore& store, int round) {
  std::map<std::pair<int32_t, int>, std::string> out;
  for (const StoredResponse& r : store.responses(round)) {
    EXPECT_TRUE(out.emplace(std::make_pair(r.user, r.sample), r.text).second) << "duplicate " << r.user << "/" << r.sample;
    EXPECT_FALSE(r.ids.empty());
  }
  return out;
}

nlohmann::json stats(const RunStore& store, const std::string& stage) {
  auto doc = store.doc(stage);
  return doc ? nlohmann::json::parse(*doc) : nlohmann::json();
}

// One llama-server per test process and slot count. Texts are compared on a one-slot server: with
// several slots, where in the shared cache a request lands (which depends on what came before) and
// what else is decoded beside it change the last bits of its logits, and now and then a sample.
LlamaServer* shared_server(int slots = 1) {
  static std::map<int, std::unique_ptr<LlamaServer>> servers;
  std::unique_ptr<LlamaServer>& server = servers[slots];
  if (!server) {
    server = std::make_unique<LlamaServer>(slots, 1);
    std::string why;
    if (!server->start(&why)) ADD_FAILURE() << why;
  }
  return server.get();
}

// The texts of a clean in-process run at `url` with the given concurrency (generate/0 and greedy/0).
struct CleanRun {
  std::map<std::pair<int32_t, int>, std::string> sampled, greedy;
  nlohmann::json sampled_stats, greedy_stats;
  size_t users = 0;
};

CleanRun clean_run(const std::string& name, const std::string& url, int concurrency) {
  // Each test runs in its own process under ctest, side by side: the directory names the process.
  fs::path dir = fresh_temp_dir(name + "-" + std::to_string(::getpid()));
  RunContext ctx = open_run(parse(config_text(dir, url, concurrency)));
  stage_generate(ctx, 0);
  stage_generate_greedy(ctx, 0);
  CleanRun out;
  out.users = ctx.users.size();
  out.sampled = texts_of(*ctx.store, 0);
  out.greedy = texts_of(*ctx.store, greedy_store_round(0));
  out.sampled_stats = stats(*ctx.store, "generate/0");
  out.greedy_stats = stats(*ctx.store, "greedy/0");
  return out;
}

const CleanRun& reference_run() {
  static std::optional<CleanRun> run;
  if (!run) run = clean_run("openai-reference", shared_server()->url(), 1);
  return *run;
}

}  // namespace

TEST(OpenAIBackend, ConfigErrorsNameTheKey) {
  fs::path dir = fresh_temp_dir("openai-config");
  EXPECT_THROW(parse(config_text(dir, "", 1)), Error);  // openai without url
  try {
    parse("[generate]\nconcurrency = 4\n");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("concurrency is a setting of backend = \"openai\""), std::string::npos) << e.what();
  }
  try {
    parse("[generate]\nbackend = \"vllm\"\n");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backend must be"), std::string::npos) << e.what();
  }
  // Keys that do not change texts stay out of the fingerprint; the url and model do not.
  RunConfig a = parse(config_text(dir, "http://127.0.0.1:1", 1));
  RunConfig b = parse(config_text(dir, "http://127.0.0.1:1", 7, 4, "api_key_env = \"SOME_KEY\"\n"));
  RunConfig c = parse(config_text(dir, "http://127.0.0.1:2", 1));
  EXPECT_EQ(a.sections_text({"generate"}), b.sections_text({"generate"}));
  EXPECT_NE(a.sections_text({"generate"}), c.sections_text({"generate"}));
}

TEST(OpenAIBackend, StagesStoreEveryResponseOnceWithTheRefusalOfNFoundOnce) {
  RLRF_REQUIRE_LLAMA_SERVER();
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  const CleanRun& ref = reference_run();
  ASSERT_GT(ref.users, 4u);
  EXPECT_EQ(ref.sampled.size(), ref.users * kSamples);
  EXPECT_EQ(ref.greedy.size(), ref.users);
  // llama-server refuses n > 1: one refused request, then single requests, for the whole stage.
  EXPECT_EQ(ref.sampled_stats["n_refusals"], 1) << ref.sampled_stats.dump();
  EXPECT_EQ(ref.sampled_stats["requests"], 1 + ref.users * kSamples) << ref.sampled_stats.dump();
  EXPECT_EQ(ref.sampled_stats["n_supported"], false);
  EXPECT_EQ(ref.greedy_stats["requests"], ref.users) << ref.greedy_stats.dump();
  std::set<std::string> distinct;
  for (const auto& [key, text] : ref.sampled) distinct.insert(text);
  EXPECT_GT(distinct.size(), ref.users) << "samples of one prompt should differ";

  // The same seeds give the same texts run after run on a one-slot server (a fresh prompt each time:
  // extensions send cache_prompt = false), with 2 requests in flight as with 1...
  CleanRun again = clean_run("openai-again", shared_server()->url(), 2);
  EXPECT_EQ(again.sampled, ref.sampled);
  EXPECT_EQ(again.greedy, ref.greedy);
  // ...and mostly with 4 in flight on a 4-slot server, which decodes them in one batch at places in
  // its shared cache that depend on what came before: its logits then differ in the last bits,
  // which moves a sample across a sampling boundary now and then (2-3 of 36 here); every
  // (user, sample) is still there once.
  CleanRun wide = clean_run("openai-wide", shared_server(4)->url(), 4);
  ASSERT_EQ(wide.sampled.size(), ref.sampled.size());
  size_t same = 0, same_greedy = 0;
  for (const auto& [key, text] : ref.sampled) same += wide.sampled.at(key) == text;
  for (const auto& [key, text] : ref.greedy) same_greedy += wide.greedy.at(key) == text;
  EXPECT_GE(same * 10, ref.sampled.size() * 7) << same << " of " << ref.sampled.size() << " samples alike";
  EXPECT_GE(same_greedy * 10, ref.greedy.size() * 8) << same_greedy << " of " << ref.greedy.size() << " greedy alike";
  std::printf("[openai] 4 slots, 4 requests in flight: %zu of %zu samples and %zu of %zu greedy responses as 1 slot's\n", same,
              ref.sampled.size(), same_greedy, ref.greedy.size());
}

TEST(OpenAIBackend, KilledRunResumesLosingAndDuplicatingNothing) {
  RLRF_REQUIRE_LLAMA_SERVER();
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  LlamaServer* server = shared_server();
  const CleanRun& ref = reference_run();
  // The killed run talks to the server through a proxy that slows each request while `slow`.
  std::atomic<bool> slow{true};
  FaultProxy proxy("127.0.0.1", server->port(), [&](int, const std::string&, httplib::Response&) {
    if (slow) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return false;
  });
  fs::path base = fresh_temp_dir("openai-resume"), dir = base / "run";
  // Two requests in flight to a one-slot server, whose texts do not depend on them (see above).
  write_file_atomic(base / "run.toml", config_text(dir, proxy.url(), 2));
  const int64_t total = static_cast<int64_t>(ref.users) * kSamples;

  pid_t pid = spawn_run(base / "run.toml", base / "killed.log");
  int64_t at_kill = 0;
  bool exited_early = false;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120); std::chrono::steady_clock::now() < deadline;) {
    at_kill = count_now(dir / "run.sqlite");
    if (at_kill >= 4) break;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited_early = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exited_early) {
    kill(pid, SIGKILL);
    wait_exit(pid);
  }
  at_kill = count_now(dir / "run.sqlite");
  ASSERT_GT(at_kill, 0) << "generation never started; the run's log:\n" << read_file(base / "killed.log");
  ASSERT_LT(at_kill, total) << "the run finished before it could be killed";

  // The server finishes what the killed run had asked for before the rerun starts: beside another
  // request it would batch the rerun's first one, whose text could then differ (see above).
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
       proxy.inflight() > 0 && std::chrono::steady_clock::now() < end;)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  slow = false;
  ASSERT_EQ(wait_exit(spawn_run(base / "run.toml", base / "rerun.log")), 0) << read_file(base / "rerun.log");
  RunStore store(dir / "run.sqlite");
  EXPECT_EQ(store.count_responses(0), total);
  EXPECT_EQ(texts_of(store, 0), ref.sampled) << "a resumed run must write the texts of an uninterrupted one";
  const std::string rerun_log = read_file(base / "rerun.log");
  EXPECT_NE(rerun_log.find("resuming"), std::string::npos) << rerun_log;
}

TEST(OpenAIBackend, ServerKilledMidRunIsRetriedUntilItIsBack) {
  RLRF_REQUIRE_LLAMA_SERVER();
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  const CleanRun& ref = reference_run();
  LlamaServer own(1, 1);
  std::string why;
  ASSERT_TRUE(own.start(&why)) << why;
  // Request 6 kills the server (SIGKILL) and brings it back a second later, on the same port.
  std::thread restarter;
  FaultProxy proxy("127.0.0.1", own.port(), [&](int n, const std::string&, httplib::Response&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (n == 6) {
      own.stop(SIGKILL);
      restarter = std::thread([&] {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        own.start();
      });
    }
    return false;
  });
  fs::path dir = fresh_temp_dir("openai-server-killed");
  std::string text = config_text(dir, proxy.url(), 1);
  RunContext ctx = open_run(parse(text));
  stage_generate(ctx, 0);
  if (restarter.joinable()) restarter.join();
  nlohmann::json s = stats(*ctx.store, "generate/0");
  EXPECT_GT(s["retries"].get<int>(), 0) << s.dump();
  EXPECT_EQ(ctx.store->count_responses(0), static_cast<int64_t>(ref.users) * kSamples);
  // The server's seeds: the same texts as the reference run (another server, the same model).
  EXPECT_EQ(texts_of(*ctx.store, 0), ref.sampled);
}

TEST(OpenAIBackend, ReloadCommandRunsOncePerServedRoundAndItsFailureStopsTheRun) {
  RLRF_REQUIRE_LLAMA_SERVER();
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  fs::path dir = fresh_temp_dir("openai-reload");
  const std::string log = (dir / "reloads.txt").string();
  RunContext ctx = open_run(parse(config_text(dir / "run", shared_server()->url(), 1, 1,
                                              "reload_command = \"echo {round} {policy_dir} >> " + log + "\"\n")));
  stage_generate(ctx, 0);
  stage_generate_greedy(ctx, 0);  // the same round's policy: not reloaded
  EXPECT_EQ(read_file(log), "0 " + ctx.model_dir(0).string() + "\n");

  fs::path dir2 = fresh_temp_dir("openai-reload-fails");
  RunContext failing = open_run(parse(config_text(dir2, shared_server()->url(), 1, 1, "reload_command = \"exit 3\"\n")));
  try {
    stage_generate(failing, 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("reload_command for round 0 failed"), std::string::npos) << e.what();
  }
  EXPECT_EQ(failing.store->count_responses(0), 0);
}

// `rlrf generate --backend openai`: the same JSON lines as the builtin engine's; greedy, the same ids.
TEST(OpenAIBackend, GenerateVerbThroughTheServerGivesTheBuiltinGreedyIds) {
  RLRF_REQUIRE_LLAMA_SERVER();
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory";
  fs::path dir = fresh_temp_dir("openai-verb");
  write_file_atomic(dir / "prompts.txt", "Once upon a time\nTom had a red ball\n");
  auto run = [&](const std::string& extra) {
    const std::string cmd = std::string(RLRF_BIN) + " generate --model " +
                            (shared_dir() / "models" / "tinystories-656k").string() + " --prompts " +
                            (dir / "prompts.txt").string() + " -n 2 --max-new-tokens 24 --temperature 0 --json " +
                            extra + " 2>>" + (dir / "err.txt").string();
    std::vector<nlohmann::json> lines;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[1 << 16];
    while (p && fgets(buf, sizeof buf, p)) lines.push_back(nlohmann::json::parse(buf));
    EXPECT_EQ(p ? pclose(p) : -1, 0) << cmd << "\n" << read_file(dir / "err.txt");
    return lines;
  };
  std::vector<nlohmann::json> builtin = run(""), served = run("--backend openai --url " + shared_server()->url());
  ASSERT_EQ(builtin.size(), 4u);
  ASSERT_EQ(served.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(served[i]["prompt_index"], builtin[i]["prompt_index"]);
    EXPECT_EQ(served[i]["sample_index"], builtin[i]["sample_index"]);
    EXPECT_EQ(served[i]["ids"], builtin[i]["ids"]) << i;
    EXPECT_EQ(served[i]["text"], builtin[i]["text"]) << i;
  }
  EXPECT_NE(read_file(dir / "err.txt").find("refuses n > 1"), std::string::npos) << read_file(dir / "err.txt");
}
