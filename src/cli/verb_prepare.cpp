// `rlrf prepare`: loads a dataset, builds the user split and the rerank lists of a recommendation
// setting (data/prepare.h), writes OUT/prepared.bin and prints the counts.
#include <CLI/CLI.hpp>
#include <cstdint>

#include <cstdio>

#include "cli/verbs.h"
#include "data/prepare.h"
#include "util/config.h"
#include "util/files.h"
#include "util/log.h"

static int run_prepare(int argc, char** argv) {
  CLI::App app{"Load a dataset, split users, build rerank lists; writes OUT/prepared.bin.\n"
               "example: rlrf prepare --dataset ml-100k --setting kar --seed 42 --out runs/ml100k",
               "rlrf prepare"};
  std::string config_path, dataset, data_dir, setting, first_stage, out_dir;
  int64_t seed = -1;
  int window = 0;
  bool drop = false;
  app.add_option("--config", config_path, "TOML file; its [prepare] section is read first")->check(CLI::ExistingFile);
  const rlrf::PrepareConfig defaults;
  app.add_option("--dataset", dataset, "ml-100k | ml-1m | amazon-books (default " + defaults.dataset + ")");
  app.add_option("--data-dir", data_dir, "directory holding <dataset>/ (default: the shared data directory)");
  app.add_option("--setting", setting, "kar | popularity | first-stage (default " + defaults.setting + ")");
  app.add_option("--first-stage", first_stage, "candidate generator of setting first-stage: itemknn | mf");
  app.add_option("--window", window, "first-stage window length in interactions (default " + std::to_string(defaults.first_stage_window) + ")");
  app.add_option("--seed", seed, "random seed (default " + std::to_string(defaults.seed) + ")");
  app.add_flag("--drop-lists-without-positive", drop, "drop training lists that have no positive label");
  app.add_option("--out", out_dir, "output directory (prepared.bin)")->required();
  CLI11_PARSE(app, argc, argv);

  rlrf::PrepareConfig config;
  if (!config_path.empty()) config.read(rlrf::ConfigFile::load(config_path).section("prepare"));
  if (!dataset.empty()) config.dataset = dataset;
  if (!data_dir.empty()) config.data_dir = data_dir;
  if (!setting.empty()) config.setting = setting;
  if (!first_stage.empty()) config.first_stage = first_stage;
  if (window > 0) config.first_stage_window = window;
  if (seed >= 0) config.seed = static_cast<uint64_t>(seed);
  if (drop) config.drop_lists_without_positive = true;
  config.validate();

  rlrf::log_info("loading {} from {}", config.dataset, rlrf::data_dir(config.data_dir).string());
  rlrf::Dataset dataset_loaded = rlrf::load_configured_dataset(config);
  rlrf::PreparedData prepared = rlrf::prepare(dataset_loaded, config);
  std::filesystem::path out = std::filesystem::path(out_dir) / "prepared.bin";
  rlrf::save_prepared(prepared, out);
  std::fputs(rlrf::format_counts(prepared, rlrf::count(prepared)).c_str(), stdout);
  std::printf("wrote %s\n", out.string().c_str());
  return 0;
}

static rlrf::cli::VerbRegistration reg_prepare({"prepare", "load a dataset, split users, build rerank lists", 10, run_prepare});
