// `rlrf tokenize`: text to token ids (one JSON array on stdout) with a Hugging Face tokenizer.json,
// or, with --decode, ids back to text. A debugging aid for prompts and generations.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/verbs.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/strings.h"

// Ids from the positional arguments: "1 2 3", "1,2,3" or "[1, 2, 3]" (as printed by tokenize).
static std::vector<int32_t> parse_ids(const std::vector<std::string>& args) {
  std::vector<int32_t> ids;
  for (const std::string& arg : args) {
    std::string cleaned = arg;
    for (char& c : cleaned)
      if (c == '[' || c == ']' || c == ',') c = ' ';
    for (std::string_view part : rlrf::split(cleaned, " ")) {
      if (rlrf::trim(part).empty()) continue;
      auto v = rlrf::parse_int(rlrf::trim(part));
      RLRF_CHECK(v && *v >= 0 && *v <= INT32_MAX,
                 "--decode: '{}' is not a token id (give ids like 128000 9906 or [128000, 9906])", part);
      ids.push_back(static_cast<int32_t>(*v));
    }
  }
  return ids;
}

static int run_tokenize(int argc, char** argv) {
  CLI::App app{
      "Print the token ids of TEXT as one JSON array, or with --decode the text of ids.\n"
      "examples:\n"
      "  rlrf tokenize --tokenizer ../shared/tokenizers/llama-3.1 \"Hello, my dog is cute\"\n"
      "    -> [128000, 9906, 11, 856, 5679, 374, 19369]\n"
      "  rlrf tokenize --tokenizer ../shared/tokenizers/llama-3.1 --decode 128000 9906 11\n"
      "    -> Hello,\n"
      "  printf 'Once upon a time' | rlrf tokenize --tokenizer ../shared/models/tinystories-656k -",
      "rlrf tokenize"};
  std::string tokenizer_path, chat_template;
  bool no_special = false, decode = false, keep_special = false, chat = false;
  std::vector<std::string> args;
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json, or a directory holding it (and tokenizer_config.json)")
      ->required();
  app.add_flag("--no-special", no_special, "encode: do not add BOS/EOS of the post-processor");
  app.add_flag("--chat", chat, "encode: TEXT is one user message, rendered with the chat template + generation prompt");
  app.add_option("--chat-template", chat_template,
                 "with --chat: llama3 | llama3.1 | chatml | none (default: the tokenizer's own)");
  app.add_flag("--decode", decode, "decode the ids given instead of encoding text");
  app.add_flag("--keep-special", keep_special, "decode: keep special tokens such as <|eot_id|> in the text");
  app.add_option("text", args, "the text (\"-\" reads stdin), or with --decode the ids")->required();
  CLI11_PARSE(app, argc, argv);

  rlrf::Tokenizer tok = rlrf::Tokenizer::load(tokenizer_path);
  if (decode) {
    std::string text = tok.decode(parse_ids(args), !keep_special);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  std::string text = rlrf::join(args, " ");
  if (text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  std::vector<int32_t> ids;
  if (chat)
    ids = rlrf::encode_chat(tok, {{"user", text}}, true, chat_template);
  else
    ids = tok.encode(text, !no_special);
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  out += "]\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

static rlrf::cli::VerbRegistration reg_tokenize({"tokenize", "text to token ids (or --decode ids to text) with a tokenizer.json",
                                        90, run_tokenize});
