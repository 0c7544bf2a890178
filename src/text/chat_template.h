// Chat templates: turning a conversation into the prompt text a model was trained on.
//
//   "llama3"  <|begin_of_text|> then, per message,
//             <|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>
//             and with add_generation_prompt <|start_header_id|>assistant<|end_header_id|>\n\n
//             (the Llama-3 template of tokenizer_config.json; no date header of 3.1-Instruct).
//   "llama3.1" Hugging Face's Llama-3.1-Instruct template: as llama3, but the system turn always
//             comes first and opens with its date header, "Cutting Knowledge Date: December 2023\n
//             Today Date: {date}\n\n", then the system message (trimmed; none: nothing), where
//             {date} is `date_string` ("26 Jul 2024", the template's own default when no
//             date_string is passed to apply_chat_template).
//   "chatml"  per message <|im_start|>{role}\n{content}<|im_end|>\n, and with
//             add_generation_prompt <|im_start|>assistant\n; when the first message is not a system
//             message, a system turn "You are a helpful assistant." comes first (Qwen2-Instruct).
//   "none"    for base models: the messages' contents in order, joined by one blank line ("\n\n"),
//             with no roles and no markers; add_generation_prompt adds nothing. A system message
//             "S" and a user message "U" render as "S\n\nU".
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer.h"

namespace rlrf {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// The names render_chat accepts.
inline constexpr const char* kChatTemplateNames[] = {"llama3", "llama3.1", "chatml", "none"};

// The date the Llama-3.1 template shows when it is given none.
inline constexpr const char* kLlama31DefaultDate = "26 Jul 2024";

// Names a Jinja chat_template by its markers: <|start_header_id|> with "Cutting Knowledge Date"
// -> "llama3.1", <|start_header_id|> alone -> "llama3", <|im_start|> -> "chatml", empty -> "none". Any other template is "none" too, with a warning quoting its start
// (a tokenizer stays usable for plain text; pass a template name to override).
std::string detect_chat_template(std::string_view jinja);

// Renders `messages` with the named template; throws Error for an unknown name.
std::string render_chat(const std::vector<ChatMessage>& messages, std::string_view template_name,
                        bool add_generation_prompt, std::string_view date_string = kLlama31DefaultDate);

// The token that ends an assistant turn under the template, as its rendering of a finished answer
// ends it: <|eot_id|> (llama3, llama3.1), <|im_end|> (chatml); "none" and templates whose marker
// the vocabulary lacks: the tokenizer's end-of-sequence token (-1 when it has none).
int32_t end_of_turn_id(const Tokenizer& tokenizer, std::string_view template_name);

// The template to use: `override_name` when non-empty (checked), else the tokenizer's own.
std::string resolve_chat_template(const Tokenizer& tokenizer, std::string_view override_name = {});

// Renders with resolve_chat_template(tokenizer, override_name) and tokenizes, matching the
// template's special-token strings as their ids. BOS comes from the post-processor only when the
// rendered text does not already start with the BOS string (llama3's text does), so it is never
// doubled.
std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, std::string_view override_name = {});

}  // namespace rlrf
