// Responses from an engine (rlrf reward --responses): what is read, and errors that name the line.
#include <gtest/gtest.h>

#include "align/reward.h"
#include "error_of.h"
#include "util/files.h"

using namespace rlrf;

namespace {

Dataset three_users() {
  Dataset d;
  d.name = "test";
  for (const char* id : {"7", "alice", "9"}) d.users.push_back({id, "", "", ""});
  return d;
}

std::filesystem::path write_jsonl(const std::string& name, const std::string& text) {
  const char* tmp = std::getenv("RLRF_TEST_TMP");
  std::filesystem::path dir = std::filesystem::path(tmp ? tmp : "/tmp") / "responses_test";
  std::filesystem::create_directories(dir);
  write_file_atomic(dir / name, text);
  return dir / name;
}

}  // namespace

TEST(Responses, ReadsUsersByRawIdAndNumbersSamplesInOrder) {
  auto path = write_jsonl("ok.jsonl",
                          "{\"user\": 7, \"text\": \"a\"}\n\n{\"user\": \"alice\", \"sample\": 3, \"text\": \"b\"}\n"
                          "{\"user\": \"7\", \"text\": \"c\"}\n{\"user\": \"alice\", \"text\": \"d\"}\n");
  std::vector<UserResponse> r = read_responses_jsonl(path, three_users());
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].user, 0);
  EXPECT_EQ(r[0].sample, 0);
  EXPECT_EQ(r[1].user, 1);
  EXPECT_EQ(r[1].sample, 3);
  EXPECT_EQ(r[2].sample, 1);  // user 7's next
  EXPECT_EQ(r[3].sample, 4);  // alice's next after 3
  EXPECT_EQ(r[3].text, "d");
}

TEST(Responses, BadLinesNameTheFileLineAndField) {
  Dataset d = three_users();
  auto err = [&](const std::string& name, const std::string& text) {
    return test::error_of([&] { read_responses_jsonl(write_jsonl(name, text), d); });
  };
  EXPECT_NE(err("json.jsonl", "{\"user\": 7, \"text\": \"a\"}\n{oops\n").find("json.jsonl:2: not valid JSON"),
            std::string::npos);
  EXPECT_NE(err("sample.jsonl", "{\"user\": 7, \"sample\": \"1\", \"text\": \"a\"}\n").find("sample.jsonl:1: \"sample\" must be"),
            std::string::npos);
  EXPECT_NE(err("neg.jsonl", "{\"user\": 7, \"sample\": -1, \"text\": \"a\"}\n").find("\"sample\" must be"),
            std::string::npos);
  EXPECT_NE(err("user.jsonl", "{\"user\": [7], \"text\": \"a\"}\n").find("\"user\" must be"), std::string::npos);
  EXPECT_NE(err("unknown.jsonl", "{\"user\": 8, \"text\": \"a\"}\n").find("unknown.jsonl:1: unknown user '8'"),
            std::string::npos);
  EXPECT_NE(err("text.jsonl", "{\"user\": 7, \"text\": 5}\n").find("expected an object"), std::string::npos);
  std::string twice = err("twice.jsonl", "{\"user\": 7, \"sample\": 1, \"text\": \"a\"}\n{\"user\": 7, \"sample\": 1, \"text\": \"b\"}\n");
  EXPECT_NE(twice.find("twice.jsonl:2: user '7' sample 1 was already given on line 1"), std::string::npos) << twice;
}
