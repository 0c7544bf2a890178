// Chat templates: llama3, chatml and none (see chat_template.h for the exact formats).
#include "text/chat_template.h"

#include <algorithm>
#include <cstdint>

#include "util/error.h"
#include "util/log.h"

namespace rlrf {

namespace {

// Jinja's `| trim`: strips whitespace at both ends.
std::string_view trim_ws(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  size_t b = 0, e = s.size();
  while (b < e && ws(s[b])) ++b;
  while (e > b && ws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

bool known_template(std::string_view name) {
  return std::find(std::begin(kChatTemplateNames), std::end(kChatTemplateNames), name) != std::end(kChatTemplateNames);
}

}  // namespace

std::string detect_chat_template(std::string_view jinja) {
  if (jinja.find("<|start_header_id|>") != std::string_view::npos)
    return jinja.find("Cutting Knowledge Date") != std::string_view::npos ? "llama3.1" : "llama3";
  if (jinja.find("<|im_start|>") != std::string_view::npos) return "chatml";
  if (!trim_ws(jinja).empty())
    log_warn("chat_template not recognised (neither llama3 nor chatml markers): '{}...'; using 'none'",
             jinja.substr(0, 60));
  return "none";
}

std::string render_chat(const std::vector<ChatMessage>& messages, std::string_view name, bool add_generation_prompt,
                        std::string_view date_string) {
  std::string out;
  if (name == "llama3.1") {
    // The system turn is always there, its date header first (HF's Llama-3.1-Instruct template).
    size_t first = 0;
    std::string_view system;
    if (!messages.empty() && messages.front().role == "system") {
      system = trim_ws(messages.front().content);
      first = 1;
    }
    out = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n";
    out += "Cutting Knowledge Date: December 2023\nToday Date: ";
    out += date_string;
    out += "\n\n";
    out += system;
    out += "<|eot_id|>";
    for (size_t i = first; i < messages.size(); ++i) {
      out += "<|start_header_id|>";
      out += messages[i].role;
      out += "<|end_header_id|>\n\n";
      out += trim_ws(messages[i].content);
      out += "<|eot_id|>";
    }
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  } else if (name == "llama3") {
    out = "<|begin_of_text|>";
    for (const ChatMessage& m : messages) {
      out += "<|start_header_id|>";
      out += m.role;
      out += "<|end_header_id|>\n\n";
      out += trim_ws(m.content);
      out += "<|eot_id|>";
    }
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  } else if (name == "chatml") {
    if (messages.empty() || messages.front().role != "system")
      out += "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";
    for (const ChatMessage& m : messages) {
      out += "<|im_start|>";
      out += m.role;
      out += "\n";
      out += m.content;
      out += "<|im_end|>\n";
    }
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
  } else if (name == "none") {
    for (size_t i = 0; i < messages.size(); ++i) {
      if (i) out += "\n\n";
      out += messages[i].content;
    }
  } else {
    fail("unknown chat template '{}' (known: llama3, llama3.1, chatml, none)", name);
  }
  return out;
}

int32_t end_of_turn_id(const Tokenizer& tokenizer, std::string_view name) {
  int32_t id = -1;
  if (name == "llama3" || name == "llama3.1") id = tokenizer.token_to_id("<|eot_id|>");
  else if (name == "chatml") id = tokenizer.token_to_id("<|im_end|>");
  if (id >= 0) return id;
  std::vector<int32_t> eos = tokenizer.eos_ids();
  return eos.empty() ? -1 : eos.front();
}

std::string resolve_chat_template(const Tokenizer& tokenizer, std::string_view override_name) {
  if (override_name.empty()) return tokenizer.chat_template();
  if (!known_template(override_name)) fail("unknown chat template '{}' (known: llama3, llama3.1, chatml, none)", override_name);
  return std::string(override_name);
}

std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, std::string_view override_name) {
  std::string text = render_chat(messages, resolve_chat_template(tokenizer, override_name), add_generation_prompt);
  int32_t bos = tokenizer.bos_id();
  bool has_bos = bos >= 0 && text.rfind(tokenizer.id_to_token(bos), 0) == 0;
  return tokenizer.encode(text, !has_bos);
}

}  // namespace rlrf
