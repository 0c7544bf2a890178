// `rlrf encode`: knowledge texts to vectors with the paper's encoder (a BERT-family model) or any
// other text encoder; prints one JSON line per text, or writes them to a file.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <fmt/format.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/verbs.h"
#include "encode/bert_encoder.h"
#include "encode/encode_cache.h"
#include "encode/encoder.h"
#include "rerank/knowledge_vectors.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "runtime/runtime.h"

namespace {

using json = nlohmann::json;

// Texts of a JSON-lines file: each line an object with "text" (other fields are kept) or a string.
std::vector<json> read_input(const std::string& path) {
  std::vector<json> rows;
  std::vector<std::string> lines;
  if (path == "-") {
    for (std::string line; std::getline(std::cin, line);) lines.push_back(line);
  } else {
    lines = rlrf::read_lines(path);
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(lines[i]);
    } catch (const json::parse_error& e) {
      rlrf::fail("{}:{}: not valid JSON: {}", path, i + 1, e.what());
    }
    if (j.is_string()) j = json{{"text", j.get<std::string>()}};
    RLRF_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(),
               "{}:{}: expected {{\"text\": \"...\"}} or a JSON string", path, i + 1);
    rows.push_back(std::move(j));
  }
  return rows;
}

int run_encode(int argc, char** argv) {
  CLI::App app{
      "Encode texts into knowledge vectors: one JSON line {\"text\", ..., \"vector\": [...]} per text.\n"
      "The paper's encoder is BERT (mean-pooled last hidden states); --model takes any BERT-family\n"
      "Hugging Face or sentence-transformers directory (bert-base-uncased, bge-base-en-v1.5, e5-base-v2,\n"
      "all-MiniLM-L6-v2). Without --model, --encoder names another encoder (glove, hash).\n\n"
      "examples:\n"
      "  rlrf encode --model models/bert-base-uncased --text \"A sci-fi fan who loves Star Wars.\"\n"
      "  rlrf encode --model models/all-MiniLM-L6-v2 --input texts.jsonl --output vectors.jsonl --dtype bf16",
      "rlrf encode"};
  std::string model, encoder_name, input, output, cache_dir;
  std::vector<std::string> texts;
  rlrf::BertEncoderOptions o;
  int threads = 0;
  app.add_option("--model", model, "BERT-family model directory (config.json, model.safetensors, tokenizer.json)");
  app.add_option("--encoder", encoder_name, fmt::format("another encoder instead: glove | hash | bert:DIR?... (default {})", rlrf::KnowledgeConfig{}.encoder));
  app.add_option("--text", texts, "a text to encode (repeatable)");
  app.add_option("--input", input, "JSON lines, each {\"text\": ...} (other fields kept) or a string; - reads stdin");
  app.add_option("--output", output, "write the JSON lines here instead of stdout");
  app.add_option("--pooling", o.pooling, "auto | mean | cls | max | mean_sqrt_len (default auto: the "
                 "sentence-transformers folder's, else mean)");
  app.add_flag("--normalize", o.normalize, "L2-normalise the vectors");
  app.add_option("--max-length", o.max_length, "tokens per text, [CLS]/[SEP] included (default: the model's limit)");
  app.add_option("--dtype", o.dtype, "fp32 | bf16")->capture_default_str();
  app.add_option("--batch-size", o.batch_size, "texts per forward pass")->capture_default_str();
  app.add_option("--cache-dir", cache_dir, "encode through this on-disk cache (a rerun encodes nothing twice)");
  app.add_option("--threads", threads, "intra-op threads (default: all cores)");
  CLI11_PARSE(app, argc, argv);

  RLRF_CHECK(texts.empty() != input.empty(), "give either --text (repeatable) or --input FILE.jsonl");
  RLRF_CHECK(model.empty() || encoder_name.empty(), "give --model (a BERT directory) or --encoder, not both");
  rlrf::init_threads(threads);
  std::vector<json> rows;
  if (!input.empty()) {
    rows = read_input(input);
  } else {
    for (const std::string& t : texts) rows.push_back(json{{"text", t}});
  }
  std::vector<std::string> strings;
  strings.reserve(rows.size());
  for (const json& r : rows) strings.push_back(r["text"].get<std::string>());

  std::unique_ptr<rlrf::TextEncoder> encoder;
  if (!model.empty()) {
    o.model = model;
    encoder = std::make_unique<rlrf::BertTextEncoder>(o);
  } else {
    encoder = rlrf::make_encoder(encoder_name);
  }
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor vectors = cache_dir.empty() ? encoder->encode(strings) : rlrf::encode_cached(*encoder, strings, cache_dir);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rlrf::log_info("encode: {} texts -> {} x {} with {} in {:.2f} s ({:.1f} texts/s)", strings.size(), vectors.size(0),
                 encoder->dim(), encoder->name(), secs, secs > 0 ? static_cast<double>(strings.size()) / secs : 0.0);

  vectors = vectors.contiguous();
  const float* v = vectors.data_ptr<float>();
  const int64_t d = vectors.size(1);
  std::ofstream file;
  if (!output.empty()) {
    file.open(output, std::ios::binary | std::ios::trunc);
    RLRF_CHECK(file, "cannot write '{}'", output);
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    std::string line = rows[i].dump();
    line.pop_back();  // the closing brace: the vector goes last
    line += ", \"vector\": [";
    for (int64_t k = 0; k < d; ++k) line += fmt::format("{}{:.7g}", k ? ", " : "", v[static_cast<int64_t>(i) * d + k]);
    line += "]}\n";
    if (file.is_open())
      file << line;
    else
      std::fwrite(line.data(), 1, line.size(), stdout);
  }
  if (file.is_open()) {
    file.close();
    RLRF_CHECK(file, "error writing '{}'", output);
    rlrf::log_info("encode: wrote {} vectors to {}", rows.size(), output);
  }
  return 0;
}

rlrf::cli::VerbRegistration reg_encode({"encode", "knowledge texts to vectors (BERT-family models, GloVe, hashing)", 22, run_encode});

}  // namespace
