// SPDX-License-Identifier: Apache-2.0
// SafetensorsFile and SafetensorsWriter: bit-exact round trips of every dtype and odd shapes, and
// malformed files that must each give a Corruption naming the file and the tensor or field.
#include "runtime/formats/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/file_util.h"
#include "runtime/formats/safetensors_writer.h"
#include "tests/common/temp_files.h"

namespace df11 {
namespace {

using ::testing::HasSubstr;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = std::random_device{}();
    rng_.seed(seed_);
  }

  std::vector<uint8_t> RandomBytes(size_t n) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng_());
    return v;
  }
  std::string Path(const std::string& name) const { return JoinPath(dir_, name); }

  // A file made of an explicit length prefix, header text and `data_size` random data bytes.
  std::string WriteRaw(const std::string& name, uint64_t header_len, const std::string& header,
                       size_t data_size) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(header_len >> (8 * i));
    bytes += header;
    std::vector<uint8_t> data = RandomBytes(data_size);
    bytes.append(data.begin(), data.end());
    EXPECT_TRUE(WriteFileAtomic(Path(name), bytes).ok());
    return Path(name);
  }
  std::string WriteHeader(const std::string& name, const std::string& header, size_t data_size) {
    return WriteRaw(name, header.size(), header, data_size);
  }

  test_support::TempDir tmp_{"df11_safetensors_test"};
  const std::string dir_ = tmp_.path();
  uint32_t seed_ = 0;
  std::mt19937 rng_;
};

TEST_F(SafetensorsTest, DTypeNamesRoundTrip) {
  const std::vector<std::pair<DType, size_t>> all = {
      {DType::kBool, 1}, {DType::kU8, 1},  {DType::kI8, 1},      {DType::kU16, 2},
      {DType::kI16, 2},  {DType::kF16, 2}, {DType::kBF16, 2},    {DType::kU32, 4},
      {DType::kI32, 4},  {DType::kF32, 4}, {DType::kU64, 8},     {DType::kI64, 8},
      {DType::kF64, 8},  {DType::kF8E4M3, 1}, {DType::kF8E5M2, 1}};
  for (auto [dtype, size] : all) {
    EXPECT_EQ(DTypeSize(dtype), size) << DTypeName(dtype);
    StatusOr<DType> parsed = ParseDType(DTypeName(dtype));
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(*parsed, dtype);
  }
  EXPECT_EQ(DTypeName(DType::kF8E4M3), "F8_E4M3");
  StatusOr<DType> bad = ParseDType("bf16");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("\"bf16\""));
}

TEST_F(SafetensorsTest, RoundTripIsBitExact) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  struct Spec {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Spec> specs = {
      {"model.layers.0.self_attn.q_proj.weight", DType::kBF16, {3, 5}},
      {"f32.vec", DType::kF32, {7}},
      {"i64.cube", DType::kI64, {2, 2, 2}},
      {"scalar", DType::kU8, {}},
      {"empty", DType::kF16, {0, 4}},
      {"flag", DType::kBool, {1}},
      {"f8", DType::kF8E4M3, {4, 3}},
      {"f64.scalar", DType::kF64, {}},
      {"empty.last", DType::kI32, {5, 0}},
  };
  std::vector<std::vector<uint8_t>> payloads;
  SafetensorsWriter writer;
  for (const Spec& s : specs) {
    int64_t numel = 1;
    for (int64_t d : s.shape) numel *= d;
    payloads.push_back(RandomBytes(numel * DTypeSize(s.dtype)));
    ASSERT_TRUE(writer.AddTensor(s.name, s.dtype, s.shape, payloads.back()).ok());
  }
  std::vector<uint8_t> owned = RandomBytes(6 * 2);
  ASSERT_TRUE(writer.AddOwnedTensor("owned", DType::kU16, {2, 3}, owned).ok());
  writer.SetMetadata("format", "pt");
  writer.SetMetadata("note", "utf-8 \xc3\xa9 and \"quotes\"");
  ASSERT_TRUE(writer.Write(Path("a.safetensors")).ok());

  StatusOr<SafetensorsFile> file = SafetensorsFile::Open(Path("a.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->file_size(), writer.FileSize());
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->metadata().at("note"), "utf-8 \xc3\xa9 and \"quotes\"");
  ASSERT_EQ(file->tensors().size(), specs.size() + 1);
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo* t = file->Find(specs[i].name);
    ASSERT_NE(t, nullptr) << specs[i].name;
    EXPECT_EQ(t->name, specs[i].name);
    EXPECT_EQ(t->dtype, specs[i].dtype) << specs[i].name;
    EXPECT_EQ(t->shape, specs[i].shape) << specs[i].name;
    EXPECT_EQ(t->numel * static_cast<int64_t>(DTypeSize(t->dtype)),
              static_cast<int64_t>(payloads[i].size()));
    ASSERT_EQ(t->bytes.size(), payloads[i].size()) << specs[i].name;
    EXPECT_TRUE(std::equal(t->bytes.begin(), t->bytes.end(), payloads[i].begin())) << specs[i].name;
  }
  EXPECT_EQ(file->Find("scalar")->numel, 1);
  EXPECT_EQ(file->Find("empty")->numel, 0);
  const TensorInfo* o = file->Find("owned");
  ASSERT_NE(o, nullptr);
  EXPECT_TRUE(std::equal(o->bytes.begin(), o->bytes.end(), owned.begin(), owned.end()));
  EXPECT_EQ(file->Find("missing"), nullptr);

  // Contiguous in insertion order: each tensor begins where the previous one ended.
  const uint8_t* next = file->tensors()[0].bytes.data();
  for (const TensorInfo& t : file->tensors()) {
    EXPECT_EQ(t.bytes.data(), next) << t.name;
    next = t.bytes.data() + t.bytes.size();
  }
  EXPECT_EQ(file->tensors()[0].name, specs[0].name);
  EXPECT_EQ(file->tensors().back().name, "owned");
}

TEST_F(SafetensorsTest, HeaderIsSpacePaddedToEightBytes) {
  SafetensorsWriter writer;
  std::vector<uint8_t> bytes = RandomBytes(2);
  ASSERT_TRUE(writer.AddTensor("x", DType::kBF16, {1}, bytes).ok());
  const std::string header = writer.HeaderJson();
  EXPECT_EQ(header.size() % 8, 0u);
  EXPECT_EQ(header.rfind("{\"x\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 0),
            0u);
  EXPECT_EQ(header.find_first_not_of(' ', header.rfind('}') + 1), std::string::npos);
  ASSERT_TRUE(writer.Write(Path("p.safetensors")).ok());
  StatusOr<std::string> raw = ReadFileToString(Path("p.safetensors"));
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(static_cast<uint8_t>((*raw)[0]), header.size());
  EXPECT_EQ(raw->substr(8, header.size()), header);
}

TEST_F(SafetensorsTest, EmptyFileAndMetadataOnly) {
  SafetensorsWriter writer;
  ASSERT_TRUE(writer.Write(Path("none.safetensors")).ok());
  StatusOr<SafetensorsFile> none = SafetensorsFile::Open(Path("none.safetensors"));
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->tensors().empty());
  EXPECT_TRUE(none->metadata().empty());

  writer.SetMetadata("k", "v");
  ASSERT_TRUE(writer.Write(Path("none.safetensors")).ok());  // replaces the earlier file
  StatusOr<SafetensorsFile> meta = SafetensorsFile::Open(Path("none.safetensors"));
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_EQ(meta->metadata().at("k"), "v");
  // No temporary file is left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(SafetensorsTest, WriterRejectsBadTensors) {
  SafetensorsWriter writer;
  std::vector<uint8_t> four = RandomBytes(4);
  ASSERT_TRUE(writer.AddTensor("a", DType::kF32, {1}, four).ok());
  Status dup = writer.AddTensor("a", DType::kU8, {4}, four);
  EXPECT_FALSE(dup.ok());
  EXPECT_THAT(dup.message(), HasSubstr("duplicate tensor \"a\""));
  Status size = writer.AddTensor("b", DType::kF32, {2}, four);
  EXPECT_FALSE(size.ok());
  EXPECT_THAT(size.message(), HasSubstr("\"b\""));
  EXPECT_THAT(size.message(), HasSubstr("expected 2 elements x 4 bytes"));
  Status negative = writer.AddTensor("c", DType::kU8, {-4}, four);
  EXPECT_FALSE(negative.ok());
  EXPECT_THAT(negative.message(), HasSubstr("negative dimension -4"));
  EXPECT_FALSE(writer.AddTensor("__metadata__", DType::kU8, {4}, four).ok());
  EXPECT_FALSE(writer.AddTensor("", DType::kU8, {4}, four).ok());
  EXPECT_FALSE(writer.AddTensor("huge", DType::kU8, {int64_t{1} << 40, int64_t{1} << 40}, four).ok());
  EXPECT_FALSE(writer.AddOwnedTensor("d", DType::kU16, {3}, RandomBytes(5)).ok());
  // The rejected tensors left no trace.
  ASSERT_TRUE(writer.Write(Path("w.safetensors")).ok());
  StatusOr<SafetensorsFile> file = SafetensorsFile::Open(Path("w.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ASSERT_EQ(file->tensors().size(), 1u);
  EXPECT_EQ(file->tensors()[0].name, "a");
}

TEST_F(SafetensorsTest, WriteToMissingDirectoryFails) {
  SafetensorsWriter writer;
  Status s = writer.Write(Path("no/such/dir/x.safetensors"));
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_THAT(s.message(), HasSubstr("no/such/dir/x.safetensors"));
}

TEST_F(SafetensorsTest, TruncatedFilesAreRejected) {
  SCOPED_TRACE("seed " + std::to_string(seed_));
  SafetensorsWriter writer;
  std::vector<uint8_t> a = RandomBytes(64), b = RandomBytes(30);
  ASSERT_TRUE(writer.AddTensor("a", DType::kF32, {4, 4}, a).ok());
  ASSERT_TRUE(writer.AddTensor("b", DType::kI16, {15}, b).ok());
  ASSERT_TRUE(writer.Write(Path("full.safetensors")).ok());
  StatusOr<std::string> full = ReadFileToString(Path("full.safetensors"));
  ASSERT_TRUE(full.ok());
  const size_t header_end = 8 + writer.HeaderJson().size();
  for (size_t cut : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, header_end / 2,
                     header_end - 1, header_end, header_end + 10, full->size() - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const std::string path = Path("cut" + std::to_string(cut) + ".safetensors");
    ASSERT_TRUE(WriteFileAtomic(path, full->substr(0, cut)).ok());
    StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), StatusCode::kCorruption) << file.status().ToString();
    EXPECT_THAT(file.status().message(), HasSubstr(path));
    if (cut >= header_end) {
      EXPECT_THAT(file.status().message(),
                  HasSubstr("data_offsets: expected end <= data section size " +
                            std::to_string(cut - header_end)));
    }
    if (cut == full->size() - 1) {
      EXPECT_THAT(file.status().message(), HasSubstr("tensor \"b\""));
    }
  }
}

TEST_F(SafetensorsTest, HeaderLengthBeyondFileOrLimit) {
  std::string header = "{}";
  StatusOr<SafetensorsFile> past = SafetensorsFile::Open(WriteRaw("past", 3, header, 0));
  ASSERT_FALSE(past.ok());
  EXPECT_THAT(past.status().message(), HasSubstr("header length 3 exceeds the 2 bytes"));
  StatusOr<SafetensorsFile> absurd =
      SafetensorsFile::Open(WriteRaw("absurd", uint64_t{1} << 63, header, 0));
  ASSERT_FALSE(absurd.ok());
  EXPECT_THAT(absurd.status().message(), HasSubstr("exceeds the limit of 100000000 bytes"));
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  StatusOr<SafetensorsFile> file = SafetensorsFile::Open(Path("absent.safetensors"));
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), StatusCode::kNotFound);
}

struct BadHeader {
  const char* label;
  std::string header;
  size_t data_size;
  std::string expected;  // a substring of the error message
};

TEST_F(SafetensorsTest, MalformedHeadersAreCorruption) {
  const std::vector<BadHeader> cases = {
      {"bad_json", R"({"a": {"dtype": "U8", )", 0, "expected valid JSON"},
      {"array", R"([1, 2, 3])", 0, "expected a JSON object, got array"},
      {"unknown_dtype", R"({"w": {"dtype": "F17", "shape": [1], "data_offsets": [0, 1]}})", 1,
       "tensor \"w\": dtype: unknown dtype \"F17\""},
      {"dtype_not_string", R"({"w": {"dtype": 7, "shape": [1], "data_offsets": [0, 1]}})", 1,
       "tensor \"w\": dtype: expected a string"},
      {"negative_shape", R"({"w": {"dtype": "U8", "shape": [2, -1], "data_offsets": [0, 0]}})", 0,
       "tensor \"w\": shape[1]: expected a non-negative integer, got number -1"},
      {"float_shape", R"({"w": {"dtype": "U8", "shape": [2.5], "data_offsets": [0, 2]}})", 2,
       "tensor \"w\": shape[0]: expected a non-negative integer"},
      {"shape_not_array", R"({"w": {"dtype": "U8", "shape": 4, "data_offsets": [0, 4]}})", 4,
       "tensor \"w\": shape: expected an array"},
      {"shape_overflow",
       R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0,
       "tensor \"w\": shape [4294967296,4294967296]: expected an element count that fits"},
      {"bytes_overflow",
       R"({"w": {"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 0]}})", 0,
       "expected a byte size that fits"},
      {"huge_dim", R"({"w": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]}})",
       0, "tensor \"w\": shape[0]: expected a non-negative integer"},
      {"offsets_out_of_range", R"({"w": {"dtype": "U8", "shape": [100], "data_offsets": [0, 100]}})",
       8, "tensor \"w\": data_offsets: expected end <= data section size 8"},
      {"offsets_reversed", R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 2]}})", 8,
       "tensor \"w\": data_offsets: expected begin <= end"},
      {"offsets_negative", R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [-2, 0]}})", 8,
       "tensor \"w\": data_offsets: expected [begin, end]"},
      {"offsets_three", R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2, 4]}})", 8,
       "tensor \"w\": data_offsets: expected [begin, end]"},
      {"size_mismatch", R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 16,
       "tensor \"w\": data_offsets [0,8] span 8 bytes; expected 12 (shape [3] x F32)"},
      {"overlap",
       R"({"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
           "b": {"dtype": "U8", "shape": [8], "data_offsets": [4, 12]}})",
       16, "tensor \"b\" bytes [4, 12) overlap tensor \"a\" bytes [0, 8)"},
      {"empty_inside_other",
       R"({"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
           "z": {"dtype": "U8", "shape": [0], "data_offsets": [3, 3]}})",
       8, "tensor \"z\" bytes [3, 3) overlap tensor \"a\""},
      {"unknown_key",
       R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "align": 64}})", 1,
       "tensor \"w\": unknown key \"align\""},
      {"missing_key", R"({"w": {"dtype": "U8", "shape": [1]}})", 1,
       "tensor \"w\": missing required key \"data_offsets\""},
      {"entry_not_object", R"({"w": [1, 2]})", 0, "tensor \"w\": entry: expected an object"},
      {"metadata_not_object", R"({"__metadata__": "pt"})", 0,
       "__metadata__: expected an object, got string"},
      {"metadata_value_not_string", R"({"__metadata__": {"format": 1}})", 0,
       "__metadata__[\"format\"]: expected a string, got number"},
      {"duplicate_tensor",
       R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
           "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
       2, "duplicate keys (\"w\" repeats)"},
      {"deep_nesting", "{\"w\": " + std::string(5000, '[') + std::string(5000, ']') + "}", 0,
       "nested at most"},
      {"empty_header", "", 0, "expected valid JSON"},
  };
  for (const BadHeader& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string path = WriteHeader(std::string(c.label) + ".safetensors", c.header,
                                         c.data_size);
    StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), StatusCode::kCorruption) << file.status().ToString();
    EXPECT_THAT(file.status().message(), HasSubstr(path + ": "));
    EXPECT_THAT(file.status().message(), HasSubstr(c.expected));
  }
}

TEST_F(SafetensorsTest, AcceptsHandWrittenHeadersWithGapsAndPadding) {
  // Offsets in any order, a gap, trailing spaces: legal, and tensors() is in offset order.
  const std::string header =
      R"({"late": {"dtype": "U16", "shape": [2], "data_offsets": [12, 16]},
          "early": {"data_offsets": [0, 4], "shape": [], "dtype": "I32"},
          "__metadata__": {}})"
      "   ";
  const std::string path = WriteHeader("gaps.safetensors", header, 20);
  StatusOr<SafetensorsFile> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ASSERT_EQ(file->tensors().size(), 2u);
  EXPECT_EQ(file->tensors()[0].name, "early");
  EXPECT_EQ(file->tensors()[1].name, "late");
  EXPECT_EQ(file->tensors()[1].bytes.data() - file->tensors()[0].bytes.data(), 12);
  EXPECT_TRUE(file->tensors()[0].shape.empty());
  EXPECT_EQ(file->tensors()[0].numel, 1);
}

}  // namespace
}  // namespace df11
