// SPDX-License-Identifier: Apache-2.0
// The coordinator's SQLite schema (JobStore): jobs, their items and results, worker groups.
// Items hold the request and its lease (lease_id, lease_expiry_ms, group_id) and how many leases
// of it expired without a result (attempts); a result row is written once per item.
#pragma once

namespace df11 {

inline constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  label TEXT NOT NULL,
  state TEXT NOT NULL,
  items_total INTEGER NOT NULL,
  items_done INTEGER NOT NULL DEFAULT 0,
  items_failed INTEGER NOT NULL DEFAULT 0,
  items_invalid INTEGER NOT NULL DEFAULT 0,
  tokens_generated INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS items (
  item_id INTEGER PRIMARY KEY,
  job_id TEXT NOT NULL REFERENCES jobs(id),
  line INTEGER NOT NULL,
  custom_id TEXT NOT NULL,
  request_json TEXT NOT NULL,
  state TEXT NOT NULL,
  lease_id TEXT,
  lease_expiry_ms INTEGER,
  group_id TEXT,
  attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS items_by_state ON items(state, item_id);
CREATE INDEX IF NOT EXISTS items_by_group ON items(group_id, state);
CREATE TABLE IF NOT EXISTS results (
  item_id INTEGER PRIMARY KEY REFERENCES items(item_id),
  job_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  response_json TEXT NOT NULL,
  error TEXT NOT NULL,
  completion_tokens INTEGER NOT NULL,
  group_id TEXT NOT NULL,
  stored_ms INTEGER NOT NULL,
  UNIQUE (job_id, seq));
CREATE TABLE IF NOT EXISTS worker_groups (
  id TEXT PRIMARY KEY,
  ranks INTEGER NOT NULL,
  hosts TEXT NOT NULL,
  devices TEXT NOT NULL,
  manifest_hash TEXT NOT NULL,
  registered_ms INTEGER NOT NULL,
  last_heartbeat_ms INTEGER NOT NULL,
  items_in_flight INTEGER NOT NULL DEFAULT 0,
  tokens_generated INTEGER NOT NULL DEFAULT 0,
  tokens_per_s REAL NOT NULL DEFAULT 0);
)sql";

}  // namespace df11
