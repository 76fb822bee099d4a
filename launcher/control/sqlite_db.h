// SPDX-License-Identifier: Apache-2.0
// A thin layer over the SQLite C API that returns Status: a connection (SqliteDb), prepared
// statements with chained binds (SqliteStatement) and an IMMEDIATE transaction that rolls back
// unless committed (SqliteTransaction). Not thread-safe: the owner serializes access.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/core/status.h"

namespace df11 {

class SqliteDb {
 public:
  // Opens (creating if needed) the database at `path`.
  static StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // Runs one or more statements that return no rows.
  Status Exec(const std::string& sql);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int64_t Changes() const;
  // "sqlite <path>: <what>: <sqlite error message>".
  Status Error(const std::string& what) const;

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  SqliteDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

class SqliteStatement {
 public:
  SqliteStatement(SqliteDb& db, const char* sql);
  ~SqliteStatement();
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  // Binds parameter `index` (1-based). Errors surface from the next Step()/Run().
  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, double value);
  SqliteStatement& Bind(int index, const std::string& value);
  SqliteStatement& BindNull(int index);

  // Advances to the next row: true when a row is available, false when done.
  StatusOr<bool> Step();
  // Steps to completion (for statements that return no rows).
  Status Run();
  // Clears bindings and rewinds so the statement can run again.
  void Reset();

  int64_t Int(int column) const;
  double Double(int column) const;
  std::string Text(int column) const;

 private:
  SqliteDb& db_;
  sqlite3_stmt* stmt_ = nullptr;
  Status status_;
  std::string sql_;
};

// BEGIN IMMEDIATE on construction (check status()); ROLLBACK on destruction unless Commit().
class SqliteTransaction {
 public:
  explicit SqliteTransaction(SqliteDb& db);
  ~SqliteTransaction();
  SqliteTransaction(const SqliteTransaction&) = delete;
  SqliteTransaction& operator=(const SqliteTransaction&) = delete;

  const Status& status() const { return status_; }
  Status Commit();

 private:
  SqliteDb& db_;
  Status status_;
  bool open_ = false;
};

}  // namespace df11
