// Internal to store/: a thin RAII layer over the SQLite C API — a connection with a cache
// of prepared statements, a statement in use (bind, step, read columns), and a write
// transaction. Errors become Status values naming the database file and SQLite's message.
//
// Not thread-safe: a Connection and its statements belong to one thread at a time (the
// store hands connections out under a lock).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace infera::store::sqlite {

class Connection;

// A cached prepared statement borrowed from its connection; reset (bindings cleared) when
// it goes out of scope, so the next user starts clean. A bind error is kept and reported
// by the next step().
class Statement {
 public:
  Statement(const Connection& connection, sqlite3_stmt* stmt);
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based. Text and blobs are copied.
  Statement& bind_int(int index, std::int64_t value);
  Statement& bind_real(int index, double value);
  Statement& bind_text(int index, std::string_view text);
  Statement& bind_blob(int index, std::span<const std::uint8_t> bytes);
  Statement& bind_null(int index);

  // true: a row is ready to read; false: done.
  Result<bool> step();
  // Steps until done (for statements without rows, or whose rows are not needed).
  Status run();
  // Ready to bind and run again (for a statement run once per item of a batch).
  void reset();

  std::int64_t int64(int column) const;
  double real(int column) const;
  std::string text(int column) const;
  // Valid until the next step or reset.
  std::span<const std::uint8_t> blob(int column) const;
  bool is_null(int column) const;

 private:
  const Connection* connection_;
  sqlite3_stmt* stmt_;  // null once moved from
  int bind_error_ = 0;
};

class Connection {
 public:
  // Opens (creating if `create`) the file. Sets busy_timeout; the caller sets pragmas.
  static Result<std::unique_ptr<Connection>> open(const std::string& path, bool create);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more statements without results.
  Status exec(const char* sql);
  // A prepared statement for `sql`, compiled once per connection and cached by its text.
  Result<Statement> prepare(std::string_view sql);
  // The integer in the first column of the first row (PRAGMA user_version, COUNT(*)).
  Result<std::int64_t> query_int64(std::string_view sql);

  std::int64_t last_insert_rowid() const;
  int changes() const;
  // "knowledge.sqlite3: <what>: <SQLite's message>" for the last error on this connection.
  Status error(std::string_view what, int code) const;

 private:
  Connection(sqlite3* db, std::string path);

  // Lets the cache be searched by string_view without building a std::string.
  struct SqlHash {
    using is_transparent = void;
    size_t operator()(std::string_view sql) const { return std::hash<std::string_view>{}(sql); }
  };

  sqlite3* db_;
  std::string path_;
  std::unordered_map<std::string, sqlite3_stmt*, SqlHash, std::equal_to<>> statements_;
};

// BEGIN IMMEDIATE ... COMMIT; rolled back on destruction unless committed.
class Transaction {
 public:
  explicit Transaction(Connection& connection) : connection_(connection) {}
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Status begin();
  Status commit();

 private:
  Connection& connection_;
  bool open_ = false;
};

}  // namespace infera::store::sqlite
