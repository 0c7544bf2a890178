// The run store on SQLite (WAL journal, one transaction per write).
#include "pipeline/run_store.h"

#include <chrono>
#include <cstdint>
#include <thread>

#include <sqlite3.h>

#include <cstring>

#include "util/error.h"
#include "util/files.h"

namespace rlrf {
namespace {

// A prepared statement that finalises itself; errors name the database and the SQL.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::filesystem::path& path, const char* sql) : db_(db), path_(path), sql_(sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK)
      fail("run store '{}': cannot prepare '{}': {}", path.string(), sql, sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt& bind(int i, int64_t v) { check(sqlite3_bind_int64(st_, i, v)); return *this; }
  Stmt& bind(int i, double v) { check(sqlite3_bind_double(st_, i, v)); return *this; }
  Stmt& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& bind_blob(int i, const void* p, size_t n) {
    check(sqlite3_bind_blob(st_, i, p, static_cast<int>(n), SQLITE_TRANSIENT));
    return *this;
  }
  bool step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail("run store '{}': '{}' failed: {}{}", path_.string(), sql_, sqlite3_errmsg(db_), storage_hint(path_));
  }
  void reset() { sqlite3_reset(st_); sqlite3_clear_bindings(st_); }
  int64_t i64(int c) const { return sqlite3_column_int64(st_, c); }
  double f64(int c) const { return sqlite3_column_double(st_, c); }
  std::string text(int c) const {
    const unsigned char* p = sqlite3_column_text(st_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(st_, c)) : std::string();
  }
  std::vector<int32_t> ids(int c) const {
    const void* p = sqlite3_column_blob(st_, c);
    size_t n = static_cast<size_t>(sqlite3_column_bytes(st_, c)) / sizeof(int32_t);
    std::vector<int32_t> out(n);
    if (n) std::memcpy(out.data(), p, n * sizeof(int32_t));
    return out;
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) fail("run store '{}': bind failed for '{}': {}", path_.string(), sql_, sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  const std::filesystem::path& path_;
  const char* sql_;
  sqlite3_stmt* st_ = nullptr;
};

const char* kSchema = R"(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS responses(round INTEGER, user INTEGER, sample INTEGER, text TEXT, ids BLOB,
  prompt_tokens INTEGER, PRIMARY KEY(round, user, sample));
CREATE TABLE IF NOT EXISTS rewards(reward_round INTEGER, round INTEGER, user INTEGER, sample INTEGER,
  reward REAL, PRIMARY KEY(reward_round, round, user, sample));
CREATE TABLE IF NOT EXISTS stages(stage TEXT PRIMARY KEY, fingerprint TEXT, finished_at TEXT);
CREATE TABLE IF NOT EXISTS logs(stage TEXT, round INTEGER, step INTEGER, metrics TEXT,
  PRIMARY KEY(stage, round, step));
CREATE TABLE IF NOT EXISTS docs(key TEXT PRIMARY KEY, json TEXT);
)";

constexpr const char* kSchemaVersion = "1";

}  // namespace

RunStore::RunStore(const std::filesystem::path& db_path) : path_(db_path) {
  ensure_dir(db_path.parent_path());
  if (sqlite3_open(db_path.c_str(), &db_) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    fail("cannot open run store '{}': {}{}", db_path.string(), msg, storage_hint(db_path));
  }
  sqlite3_busy_timeout(db_, 10000);
  // Switching a new file to WAL can answer SQLITE_BUSY without calling the busy handler while
  // another connection opens it too; retry for as long as the busy timeout would wait.
  for (int attempt = 0;; ++attempt) {
    int rc = sqlite3_exec(db_, "PRAGMA journal_mode=WAL;", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) break;
    if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || attempt == 2000) {
      std::string msg = sqlite3_errmsg(db_);
      sqlite3_close(db_);
      fail("run store '{}': cannot switch to the WAL journal: {}{}", path_.string(), msg, storage_hint(path_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  exec("PRAGMA synchronous=NORMAL;");
  // Schema and version in one write transaction: two processes opening a new store at once (a run
  // and a reader following its progress) must not both insert the version.
  exec("BEGIN IMMEDIATE;");
  try {
    exec(kSchema);
    Stmt put(db_, path_, "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?1)");
    put.bind(1, std::string(kSchemaVersion)).step();
    exec("COMMIT;");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    throw;
  }
  std::string v;
  {
    Stmt get(db_, path_, "SELECT value FROM meta WHERE key='schema_version'");
    if (get.step()) v = get.text(0);
  }
  if (v != kSchemaVersion) {
    sqlite3_close(db_);
    fail("run store '{}' has schema version {}, this program writes {}; use a new run directory", path_.string(), v,
         kSchemaVersion);
  }
}

RunStore::~RunStore() { sqlite3_close(db_); }

void RunStore::exec(const char* sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    fail("run store '{}': {} ({}){}", path_.string(), msg, sql, storage_hint(path_));
  }
}

// Runs `body` inside BEGIN IMMEDIATE / COMMIT, rolling back when it throws.
template <typename F>
static void transaction(sqlite3* db, const std::filesystem::path& path, F&& body) {
  char* err = nullptr;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    fail("run store '{}': cannot begin a transaction: {}{}", path.string(), msg, storage_hint(path));
  }
  try {
    body();
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    fail("run store '{}': commit failed: {}{}", path.string(), msg, storage_hint(path));
  }
}

void RunStore::put_responses(const std::vector<StoredResponse>& rows) {
  transaction(db_, path_, [&] {
    Stmt ins(db_, path_, "INSERT INTO responses(round, user, sample, text, ids, prompt_tokens) VALUES(?1,?2,?3,?4,?5,?6)");
    for (const StoredResponse& r : rows) {
      ins.bind(1, int64_t(r.round)).bind(2, int64_t(r.user)).bind(3, int64_t(r.sample)).bind(4, r.text);
      ins.bind_blob(5, r.ids.data(), r.ids.size() * sizeof(int32_t)).bind(6, int64_t(r.prompt_tokens));
      ins.step();
      ins.reset();
    }
  });
}

std::vector<StoredResponse> RunStore::responses(int round) const {
  Stmt q(db_, path_, "SELECT user, sample, text, ids, prompt_tokens FROM responses WHERE round=?1 ORDER BY user, sample");
  q.bind(1, int64_t(round));
  std::vector<StoredResponse> out;
  while (q.step()) {
    StoredResponse r;
    r.round = round;
    r.user = static_cast<int32_t>(q.i64(0));
    r.sample = static_cast<int>(q.i64(1));
    r.text = q.text(2);
    r.ids = q.ids(3);
    r.prompt_tokens = static_cast<int>(q.i64(4));
    out.push_back(std::move(r));
  }
  return out;
}

int64_t RunStore::count_responses(int round) const {
  Stmt q(db_, path_, "SELECT COUNT(*) FROM responses WHERE round=?1");
  q.bind(1, int64_t(round));
  q.step();
  return q.i64(0);
}

std::vector<std::pair<int32_t, int>> RunStore::response_keys(int round) const {
  Stmt q(db_, path_, "SELECT user, sample FROM responses WHERE round=?1 ORDER BY user, sample");
  q.bind(1, int64_t(round));
  std::vector<std::pair<int32_t, int>> out;
  while (q.step()) out.emplace_back(static_cast<int32_t>(q.i64(0)), static_cast<int>(q.i64(1)));
  return out;
}

void RunStore::delete_round(int round) {
  transaction(db_, path_, [&] {
    Stmt a(db_, path_, "DELETE FROM responses WHERE round=?1");
    a.bind(1, int64_t(round)).step();
    Stmt b(db_, path_, "DELETE FROM rewards WHERE round=?1 OR reward_round=?1");
    b.bind(1, int64_t(round)).step();
  });
}

void RunStore::put_rewards(int reward_round, int round, const std::vector<StoredReward>& rows) {
  transaction(db_, path_, [&] {
    Stmt del(db_, path_, "DELETE FROM rewards WHERE reward_round=?1 AND round=?2");
    del.bind(1, int64_t(reward_round)).bind(2, int64_t(round)).step();
    Stmt ins(db_, path_, "INSERT INTO rewards(reward_round, round, user, sample, reward) VALUES(?1,?2,?3,?4,?5)");
    for (const StoredReward& r : rows) {
      ins.bind(1, int64_t(reward_round)).bind(2, int64_t(round)).bind(3, int64_t(r.user)).bind(4, int64_t(r.sample)).bind(5, r.reward);
      ins.step();
      ins.reset();
    }
  });
}

std::vector<StoredReward> RunStore::rewards(int reward_round, int round) const {
  Stmt q(db_, path_, "SELECT user, sample, reward FROM rewards WHERE reward_round=?1 AND round=?2 ORDER BY user, sample");
  q.bind(1, int64_t(reward_round)).bind(2, int64_t(round));
  std::vector<StoredReward> out;
  while (q.step()) {
    out.push_back({reward_round, round, static_cast<int32_t>(q.i64(0)), static_cast<int>(q.i64(1)), q.f64(2)});
  }
  return out;
}

std::optional<std::string> RunStore::stage_fingerprint(const std::string& stage) const {
  Stmt q(db_, path_, "SELECT fingerprint FROM stages WHERE stage=?1");
  q.bind(1, stage);
  if (!q.step()) return std::nullopt;
  return q.text(0);
}

void RunStore::mark_stage_done(const std::string& stage, const std::string& fingerprint) {
  Stmt q(db_, path_, "INSERT OR REPLACE INTO stages(stage, fingerprint, finished_at) VALUES(?1, ?2, datetime('now'))");
  q.bind(1, stage).bind(2, fingerprint).step();
}

void RunStore::clear_stage(const std::string& stage) {
  Stmt q(db_, path_, "DELETE FROM stages WHERE stage=?1");
  q.bind(1, stage).step();
}

void RunStore::put_log(const std::string& stage, int round, int step, const std::string& metrics_json) {
  Stmt q(db_, path_, "INSERT OR REPLACE INTO logs(stage, round, step, metrics) VALUES(?1, ?2, ?3, ?4)");
  q.bind(1, stage).bind(2, int64_t(round)).bind(3, int64_t(step)).bind(4, metrics_json).step();
}

std::vector<std::tuple<int, int, std::string>> RunStore::logs(const std::string& stage) const {
  Stmt q(db_, path_, "SELECT round, step, metrics FROM logs WHERE stage=?1 ORDER BY round, step");
  q.bind(1, stage);
  std::vector<std::tuple<int, int, std::string>> out;
  while (q.step()) out.emplace_back(static_cast<int>(q.i64(0)), static_cast<int>(q.i64(1)), q.text(2));
  return out;
}

void RunStore::put_doc(const std::string& key, const std::string& json) {
  Stmt q(db_, path_, "INSERT OR REPLACE INTO docs(key, json) VALUES(?1, ?2)");
  q.bind(1, key).bind(2, json).step();
}

std::optional<std::string> RunStore::doc(const std::string& key) const {
  Stmt q(db_, path_, "SELECT json FROM docs WHERE key=?1");
  q.bind(1, key);
  if (!q.step()) return std::nullopt;
  return q.text(0);
}

}  // namespace rlrf
