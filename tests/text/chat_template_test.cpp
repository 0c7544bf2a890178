// Chat templates: the golden Llama-3.1 rendering, chatml and none formats, detection, and the
// encode helper that never doubles BOS.
#include "text/chat_template.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "text_test_util.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;
using json = nlohmann::json;

TEST(ChatTemplate, Llama3MatchesGoldenRenderingAndTokens) {
  json golden = json::parse(read_file(shared_dir() / "reference" / "tokenizer_golden.json"));
  const json& ex = golden.at("llama3_1_chat_template_example");
  std::vector<ChatMessage> messages;
  for (const json& m : ex.at("messages")) messages.push_back({m.at("role"), m.at("content")});
  std::string rendered = render_chat(messages, "llama3", ex.at("add_generation_prompt").get<bool>());
  EXPECT_EQ(rendered, ex.at("rendered").get<std::string>());

  // Tokens: the markers are single special ids, the text between them tokenizes on its own.
  const Tokenizer& tok = llama3_tokenizer();
  std::vector<int32_t> ids = encode_chat(tok, messages, true);
  auto cat = [](std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  std::vector<int32_t> expected = {128000, 128006, 9125, 128007, 271};  // bos, header "system" "\n\n"
  expected = cat(expected, tok.encode("You are a helpful assistant.", false));
  expected = cat(expected, {128009, 128006, 882, 128007, 271});  // eot, header "user" "\n\n"
  expected = cat(expected, tok.encode("Analyze this user's preferences.", false));
  expected = cat(expected, {128009, 128006, 78191, 128007, 271});  // eot, header "assistant" "\n\n"
  EXPECT_EQ(ids, expected) << "\n  expected " << ids_str(expected) << "\n  actual   " << ids_str(ids);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 128000), 1) << "BOS must not be doubled";
  EXPECT_EQ(tok.decode(ids, false), rendered);
}

TEST(ChatTemplate, Llama3TrimsContent) {
  EXPECT_EQ(render_chat({{"user", "  hi \n"}}, "llama3", false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
}

TEST(ChatTemplate, ChatmlAndNone) {
  std::vector<ChatMessage> m = {{"system", "Be brief."}, {"user", "Rate Heat (1995)."}};
  EXPECT_EQ(render_chat(m, "chatml", true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nRate Heat (1995).<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(m, "chatml", false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nRate Heat (1995).<|im_end|>\n");
  EXPECT_EQ(render_chat({{"user", "Hi"}}, "chatml", true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n")
      << "Qwen2's default system turn";
  EXPECT_EQ(render_chat(m, "none", true), "Be brief.\n\nRate Heat (1995).");
  EXPECT_EQ(render_chat(m, "none", false), "Be brief.\n\nRate Heat (1995).");
  EXPECT_THROW(render_chat(m, "vicuna", true), Error);
}

TEST(ChatTemplate, DetectionAndOverride) {
  EXPECT_EQ(detect_chat_template("{{ '<|start_header_id|>' + message['role'] }}"), "llama3");
  EXPECT_EQ(detect_chat_template("{% for m in messages %}{{'<|im_start|>' + m['role']}}{% endfor %}"), "chatml");
  EXPECT_EQ(detect_chat_template(""), "none");
  EXPECT_EQ(resolve_chat_template(llama3_tokenizer()), "llama3");
  EXPECT_EQ(resolve_chat_template(tinystories_tokenizer()), "none");
  EXPECT_EQ(resolve_chat_template(tinystories_tokenizer(), "chatml"), "chatml");
  EXPECT_THROW(resolve_chat_template(tinystories_tokenizer(), "alpaca"), Error);
}

TEST(ChatTemplate, EncodeAddsBosOnceForBaseModels) {
  const Tokenizer& tiny = tinystories_tokenizer();
  std::vector<ChatMessage> m = {{"system", "Tell a story."}, {"user", "Once upon a time"}};
  std::vector<int32_t> ids = encode_chat(tiny, m, true);
  EXPECT_EQ(ids, tiny.encode("Tell a story.\n\nOnce upon a time", true));
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 1);
  // Forcing llama3 on the Llama tokenizer with a user turn only.
  std::vector<int32_t> l = encode_chat(llama3_tokenizer(), {{"user", "hi"}}, false, "llama3");
  EXPECT_EQ(l.front(), 128000);
  EXPECT_EQ(std::count(l.begin(), l.end(), 128000), 1);
}

// Hugging Face's Llama-3.1-Instruct template: the system turn always first, opening with the date
// header ("26 Jul 2024" when apply_chat_template is given no date_string), the system message after it.
TEST(ChatTemplate, Llama31OffersTheDateHeaderAsHuggingFacesTemplate) {
  std::vector<ChatMessage> m = {{"system", " Be brief. "}, {"user", "Rate Heat (1995)."}};
  EXPECT_EQ(render_chat(m, "llama3.1", true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nRate Heat (1995).<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // No system message: the header alone; another date as date_string gives it.
  EXPECT_EQ(render_chat({{"user", "Hi"}}, "llama3.1", false, "02 Dec 2026"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 02 Dec 2026\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  // The Llama-3 template (the shared llama-3.1 tokenizer's) keeps no date header.
  EXPECT_EQ(render_chat(m, "llama3", false).find("Cutting Knowledge Date"), std::string::npos);
  EXPECT_EQ(detect_chat_template("{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}"
                                 "{%- endif %}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}"
                                 "{{- \"Cutting Knowledge Date: December 2023\\n\" }}"),
            "llama3.1");
  EXPECT_EQ(resolve_chat_template(llama3_tokenizer(), "llama3.1"), "llama3.1");
  // Its tokens: the markers single ids, BOS once.
  std::vector<int32_t> ids = encode_chat(llama3_tokenizer(), m, true, "llama3.1");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 128000), 1);
  EXPECT_EQ(llama3_tokenizer().decode(ids, false), render_chat(m, "llama3.1", true));
}
