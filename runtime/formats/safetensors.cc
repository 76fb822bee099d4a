// SPDX-License-Identifier: Apache-2.0
// Safetensors header validation. Every check that can fail on file content returns Corruption
// with "<path>: <where>: expected <what>, got <what>"; DF11_CHECK guards only our own invariants.
#include "runtime/formats/safetensors.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <tuple>
#include <unordered_set>
#include <utility>

#include <nlohmann/json.hpp>

#include "kernels/common/check.h"

namespace df11 {
namespace {

using nlohmann::json;

// `s` in double quotes, shortened so a hostile 100 MB name cannot flood a log line.
std::string Quoted(std::string_view s) {
  if (s.size() > 200) return "\"" + std::string(s.substr(0, 197)) + "...\"";
  return "\"" + std::string(s) + "\"";
}

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  size_t size;
};

// Indexed by the enum's value.
constexpr std::array<DTypeEntry, 15> kDTypes = {{
    {DType::kBool, "BOOL", 1},   {DType::kU8, "U8", 1},           {DType::kI8, "I8", 1},
    {DType::kU16, "U16", 2},     {DType::kI16, "I16", 2},         {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},   {DType::kU32, "U32", 4},         {DType::kI32, "I32", 4},
    {DType::kF32, "F32", 4},     {DType::kU64, "U64", 8},         {DType::kI64, "I64", 8},
    {DType::kF64, "F64", 8},     {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
}};

const DTypeEntry& Entry(DType dtype) {
  size_t i = static_cast<size_t>(dtype);
  DF11_CHECK_MSG(i < kDTypes.size() && kDTypes[i].dtype == dtype, "DType value out of range");
  return kDTypes[i];
}

// Deepest JSON nesting accepted; a valid header nests 3 levels (root, entry, shape).
constexpr int kMaxJsonDepth = 16;

struct JsonTooDeep {};

// Parses `text`, rejecting duplicate object keys (later keys would silently win, and other readers
// could pick the first) and absurd nesting. Returns an error description, or "" on success.
std::string ParseStrictJson(std::string_view text, json* out) {
  std::vector<std::unordered_set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth > kMaxJsonDepth) throw JsonTooDeep{};
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    *out = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    return std::string("valid JSON (") + e.what() + ")";
  } catch (const JsonTooDeep&) {
    return "JSON nested at most " + std::to_string(kMaxJsonDepth) + " levels deep";
  }
  if (!duplicate.empty()) return "JSON without duplicate keys (" + Quoted(duplicate) + " repeats)";
  return "";
}

// A short rendering of a JSON value for error messages.
std::string Describe(const json& value) {
  std::string s = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return std::string(value.type_name()) + " " + s;
}

bool AsNonNegative(const json& value, uint64_t* out) {
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
    return true;
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(value.get<int64_t>());
    return true;
  }
  return false;
}

struct Located {
  TensorInfo info;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Validates one tensor entry against a data section of `data_size` bytes.
Status ParseTensorEntry(const std::string& where, const json& entry, uint64_t data_size,
                        Located* out) {
  auto bad = [&](const std::string& field, const std::string& expected, const json& got) {
    return Status::Corruption(where + ": " + field + ": expected " + expected + ", got " +
                              Describe(got));
  };
  if (!entry.is_object()) return bad("entry", "an object", entry);
  for (const auto& [key, value] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return Status::Corruption(where + ": unknown key " + Quoted(key) +
                                "; expected only dtype, shape, data_offsets");
    }
  }
  for (const char* required : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(required)) {
      return Status::Corruption(where + ": missing required key \"" + required + "\"");
    }
  }

  const json& dtype = entry.at("dtype");
  if (!dtype.is_string()) return bad("dtype", "a string", dtype);
  StatusOr<DType> parsed = ParseDType(dtype.get_ref<const std::string&>());
  if (!parsed.ok()) return Status::Corruption(where + ": dtype: " + parsed.status().message());
  out->info.dtype = *parsed;

  const json& shape = entry.at("shape");
  if (!shape.is_array()) return bad("shape", "an array of non-negative integers", shape);
  int64_t numel = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    uint64_t dim = 0;
    if (!AsNonNegative(shape[i], &dim) || dim > uint64_t{std::numeric_limits<int64_t>::max()}) {
      return bad("shape[" + std::to_string(i) + "]", "a non-negative integer", shape[i]);
    }
    out->info.shape.push_back(static_cast<int64_t>(dim));
    if (__builtin_mul_overflow(numel, static_cast<int64_t>(dim), &numel)) {
      return Status::Corruption(where + ": shape " + shape.dump() +
                                ": expected an element count that fits in 64 bits");
    }
  }
  out->info.numel = numel;
  int64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<int64_t>(DTypeSize(*parsed)), &nbytes)) {
    return Status::Corruption(where + ": shape " + shape.dump() +
                              ": expected a byte size that fits in 64 bits");
  }

  const json& offsets = entry.at("data_offsets");
  const std::string kPair = "[begin, end] of non-negative integers";
  if (!offsets.is_array() || offsets.size() != 2) return bad("data_offsets", kPair, offsets);
  if (!AsNonNegative(offsets[0], &out->begin) || !AsNonNegative(offsets[1], &out->end)) {
    return bad("data_offsets", kPair, offsets);
  }
  if (out->begin > out->end) return bad("data_offsets", "begin <= end", offsets);
  if (out->end > data_size) {
    return bad("data_offsets", "end <= data section size " + std::to_string(data_size), offsets);
  }
  if (out->end - out->begin != static_cast<uint64_t>(nbytes)) {
    return Status::Corruption(where + ": data_offsets " + offsets.dump() + " span " +
                              std::to_string(out->end - out->begin) + " bytes; expected " +
                              std::to_string(nbytes) + " (shape " + shape.dump() + " x " +
                              std::string(DTypeName(*parsed)) + ")");
  }
  return Status::Ok();
}

}  // namespace

size_t DTypeSize(DType dtype) { return Entry(dtype).size; }

std::string_view DTypeName(DType dtype) { return Entry(dtype).name; }

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

StatusOr<DType> ParseDType(std::string_view name) {
  std::string accepted;
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == name) return e.dtype;
    accepted += (accepted.empty() ? "" : ", ") + std::string(e.name);
  }
  std::string shown(name.substr(0, 40));
  return Status::InvalidArgument("unknown dtype \"" + shown + "\"; expected one of " + accepted);
}

StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  SafetensorsFile result;
  DF11_ASSIGN_OR_RETURN(result.file_, MappedFile::Open(path));
  DF11_RETURN_IF_ERROR(result.ParseHeader());
  return result;
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::ParseHeader() {
  const std::string& path = file_.path();
  const uint64_t size = file_.size();
  if (size < 8) {
    return Status::Corruption(path + ": file is " + std::to_string(size) +
                              " bytes; expected at least 8 (the u64 header length)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file_.data()[i];
  if (header_len > kMaxHeaderBytes) {
    return Status::Corruption(path + ": header length " + std::to_string(header_len) +
                              " exceeds the limit of " + std::to_string(kMaxHeaderBytes) +
                              " bytes");
  }
  if (header_len > size - 8) {
    return Status::Corruption(path + ": header length " + std::to_string(header_len) +
                              " exceeds the " + std::to_string(size - 8) +
                              " bytes after the length field (truncated file?)");
  }
  const uint8_t* header_begin = file_.data() + 8;
  const uint8_t* data = header_begin + header_len;
  const uint64_t data_size = size - 8 - header_len;

  json header;
  std::string error = ParseStrictJson(
      std::string_view(reinterpret_cast<const char*>(header_begin), header_len), &header);
  if (!error.empty()) return Status::Corruption(path + ": header: expected " + error);
  if (!header.is_object()) {
    return Status::Corruption(path + ": header: expected a JSON object, got " + Describe(header));
  }

  std::vector<Located> located;
  located.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return Status::Corruption(path + ": __metadata__: expected an object, got " +
                                  Describe(entry));
      }
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return Status::Corruption(path + ": __metadata__[" + Quoted(key) +
                                    "]: expected a string, got " + Describe(value));
        }
        metadata_.emplace(key, value.get<std::string>());
      }
      continue;
    }
    Located& t = located.emplace_back();
    t.info.name = name;
    DF11_RETURN_IF_ERROR(
        ParseTensorEntry(path + ": tensor " + Quoted(name), entry, data_size, &t));
  }

  std::sort(located.begin(), located.end(), [](const Located& a, const Located& b) {
    return std::tie(a.begin, a.end, a.info.name) < std::tie(b.begin, b.end, b.info.name);
  });
  for (size_t i = 1; i < located.size(); ++i) {
    const Located& prev = located[i - 1];
    const Located& cur = located[i];
    if (cur.begin < prev.end) {
      return Status::Corruption(
          path + ": tensor " + Quoted(cur.info.name) + " bytes [" + std::to_string(cur.begin) + ", " +
          std::to_string(cur.end) + ") overlap tensor " + Quoted(prev.info.name) + " bytes [" +
          std::to_string(prev.begin) + ", " + std::to_string(prev.end) +
          "); expected disjoint data_offsets");
    }
  }

  tensors_.reserve(located.size());
  for (Located& t : located) {
    t.info.bytes = std::span<const uint8_t>(data + t.begin, t.end - t.begin);
    tensors_.push_back(std::move(t.info));
  }
  // Keys view names owned by tensors_, which is never modified again (moving it keeps the buffer).
  index_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  return Status::Ok();
}

}  // namespace df11
