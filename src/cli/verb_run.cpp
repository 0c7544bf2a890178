// `rlrf run [CONFIG.toml]`: the whole loop, stages skipped when current; the demo with no argument.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/verbs.h"
#include "pipeline/run.h"

namespace {

int run_run(int argc, char** argv) {
  CLI::App app{"Run the RLRF4Rec loop: prepare, SFT (optional), generate, reward, pairs, DPO for each round, evaluate, report.\n"
               "With no CONFIG runs the embedded demo (configs/demo.toml). Stages whose outputs are current are skipped,\n"
               "so rerunning after a crash resumes.\n\n"
               "example: rlrf run configs/demo.toml --set generate.n=8 --set run.dir=runs/n8",
               "rlrf run"};
  std::string config_path;
  std::vector<std::string> sets;
  rlrf::RunOptions options;
  bool print = false;
  app.add_option("config", config_path, "TOML config (default: the embedded demo)");
  app.add_option("--set", sets, "override a config value: section.key=value (repeatable)");
  app.add_option("--until", options.until, "stop after a stage: prepare|sft|generate|reward|pairs|dpo|evaluate|report");
  app.add_flag("--print-config", print, "print the config (the demo's when none is given) and exit");
  CLI11_PARSE(app, argc, argv);
  rlrf::ConfigFile file = config_path.empty() ? rlrf::ConfigFile::parse(rlrf::embedded_demo_config(), "(embedded demo)")
                                              : rlrf::ConfigFile::load(config_path);
  for (const std::string& s : sets) file.set(s);
  if (print) {
    std::printf("%s\n", config_path.empty() && sets.empty() ? rlrf::embedded_demo_config().c_str() : file.canonical().c_str());
    return 0;
  }
  rlrf::RunConfig config = rlrf::RunConfig::from_file(file);
  rlrf::run_pipeline(config, options);
  return 0;
}

rlrf::cli::VerbRegistration reg_run({"run", "the whole loop from one config (the demo with no argument)", 60, run_run});

}  // namespace
