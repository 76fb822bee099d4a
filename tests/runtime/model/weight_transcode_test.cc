// SPDX-License-Identifier: Apache-2.0
// Serving weights in another codec (weight_transcode.h) on the CPU backend: a model served from
// its BF16 files and from its DF11 files as ew4 gives bit-identical logits (fused GEMV steps and
// decode-to-scratch prefills), every codec holds the original weights bit for bit, a matrix with
// too many escapes keeps its codec, and the size estimates `auto` compares are close.
#include "runtime/model/weight_transcode.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/dfloat11/df11_layout.h"
#include "kernels/sampling/sampling.h"
#include "runtime/model/cpu_backend.h"
#include "tests/common/temp_files.h"
#include "tests/runtime/model/model_test_util.h"

namespace df11 {
namespace {

class WeightTranscodeTest : public ::testing::Test {
 protected:
  ModelWeights Load(const std::string& dir, WeightCodec codec) {
    auto w = LoadModelWeights(dir);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    TranscodeReport report;
    Status s = TranscodeWeights(&*w, codec, 2, &report);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(report.kept.empty()) << report.Format();
    return std::move(w).value();
  }

  test_support::TempDir tmp_{"df11_weight_transcode_test"};
  const std::string dir_ = tmp_.path();
};

// The logits of a 9-token prefill (decode-to-scratch: more than 8 tokens) and of 5 one-token
// greedy steps (the fused GEMV).
std::vector<std::vector<float>> RunGreedy(const ModelWeights& w, std::vector<int32_t> next) {
  CpuBackendOptions o;
  o.forward.threads = 2;
  CpuBackend b(&w, o);
  KvCache cache = b.NewCache(static_cast<int64_t>(next.size()) + 6);
  std::vector<std::vector<float>> all;
  for (int i = 0; i < 6; ++i) {
    SequenceStep step{&cache, next};
    std::vector<float> logits;
    Status s = b.Forward(std::span<const SequenceStep>(&step, 1), i == 0, &logits);
    EXPECT_TRUE(s.ok()) << s.ToString();
    const int64_t vocab = w.dims.vocab_rows;
    next = {ArgmaxRef(logits.data() + logits.size() - vocab, vocab)};
    all.push_back(std::move(logits));
  }
  return all;
}

TEST_F(WeightTranscodeTest, Ew4FromBf16AndFromDf11GiveBitIdenticalLogits) {
  struct Case {
    const char* name;
    TinyModelOptions o;
  };
  std::vector<Case> cases(3);
  cases[0] = {"llama", {}};
  cases[1] = {"qwen2_tied", {}};
  cases[1].o.arch = "qwen2";
  cases[1].o.tie_embeddings = true;
  cases[2] = {"qwen3", {}};
  cases[2].o.arch = "qwen3";
  cases[2].o.head_dim = 32;
  for (Case& c : cases) {
    SCOPED_TRACE(c.name);
    c.o.hidden = 128;
    c.o.intermediate = 320;  // 5 blocks of 64: no partial block; q/k/v have 128 columns
    c.o.vocab = 1500;
    c.o.seed = 41;
    auto [bf16_dir, df11_dir] = model_testing::MakeBf16AndDf11(dir_, c.o, c.name);
    const ModelWeights from_bf16 = Load(bf16_dir, WeightCodec::kEw4);
    const ModelWeights from_df11 = Load(df11_dir, WeightCodec::kEw4);
    const ModelWeights plain = Load(bf16_dir, WeightCodec::kBf16);
    for (const ModelWeights* w : {&from_bf16, &from_df11}) {
      for (const Weight* m : w->AllMatrices()) EXPECT_EQ(m->codec, WeightCodec::kEw4);
      EXPECT_EQ(w->CodecSummary(), "ew4");
      EXPECT_EQ(w->CompressedBytes(), 0);  // no DF11 unit is left
      EXPECT_LT(w->WeightBytes(), 0.80 * plain.WeightBytes());
    }
    if (c.o.tie_embeddings) {
      EXPECT_TRUE(from_df11.lm_head.SameStorage(from_df11.embed));
    }
    const std::vector<int32_t> prompt = {1, 17, 400, 3, 1499, 250, 7, 7, 9};
    const auto a = RunGreedy(from_bf16, prompt), b = RunGreedy(from_df11, prompt);
    const auto p = RunGreedy(plain, prompt);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].size(), b[i].size());
      EXPECT_EQ(std::memcmp(a[i].data(), b[i].data(), 4 * a[i].size()), 0) << "step " << i;
    }
    // The prefill multiplies decoded ew4 tiles with the BF16 GEMM: the BF16 model's logits exactly.
    EXPECT_EQ(std::memcmp(a[0].data(), p[0].data(), 4 * a[0].size()), 0);
    // One-token steps take the fused GEMV, which sums in another order: close, not equal.
    for (size_t i = 1; i < a.size(); ++i) {
      float scale = 0, diff = 0;
      for (size_t j = 0; j < a[i].size(); ++j) {
        scale = std::max(scale, std::fabs(p[i][j]));
        diff = std::max(diff, std::fabs(a[i][j] - p[i][j]));
      }
      EXPECT_LT(diff, 1e-3f * scale) << "step " << i;
    }
  }
}

TEST_F(WeightTranscodeTest, EveryCodecHoldsTheOriginalWeights) {
  TinyModelOptions o;
  o.arch = "mistral";
  o.hidden = 96;  // a partial 64-weight block per row
  o.intermediate = 160;
  o.vocab = 500;
  o.kv_heads = 1;
  auto [bf16_dir, df11_dir] = model_testing::MakeBf16AndDf11(dir_, o, "m");
  const ModelWeights original = Load(bf16_dir, WeightCodec::kBf16);
  for (const std::string& src : {bf16_dir, df11_dir}) {
    for (WeightCodec codec : {WeightCodec::kEw4, WeightCodec::kDf11, WeightCodec::kBf16}) {
      SCOPED_TRACE(src + " as " + WeightCodecName(codec));
      const ModelWeights w = Load(src, codec);
      const auto want = original.AllMatrices(), got = w.AllMatrices();
      ASSERT_EQ(want.size(), got.size());
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(got[i]->codec, codec) << "matrix " << i;
        std::vector<uint16_t> a, b;
        ASSERT_TRUE(DecodeWeight(*want[i], 1, &a).ok());
        ASSERT_TRUE(DecodeWeight(*got[i], 2, &b).ok());
        EXPECT_TRUE(a == b) << "matrix " << i;
      }
    }
  }
}

TEST_F(WeightTranscodeTest, AMatrixWithManyEscapesKeepsItsCodec) {
  TinyModelOptions o;
  o.hidden = 128;
  o.intermediate = 256;
  o.vocab = 300;
  auto [bf16_dir, df11_dir] = model_testing::MakeBf16AndDf11(dir_, o, "m");
  auto w = LoadModelWeights(bf16_dir);
  ASSERT_TRUE(w.ok());
  // Layer 1's o_proj spread over 40 exponents: ~60 % of its weights escape any 15-exponent window.
  Weight& target = w->layers[1].o;
  std::vector<uint16_t> wide(static_cast<size_t>(target.numel()));
  for (size_t i = 0; i < wide.size(); ++i) wide[i] = Df11Combine(100 + i % 40, i & 0xFF);
  target.bf16 = wide.data();
  TranscodeReport report;
  ASSERT_TRUE(TranscodeWeights(&*w, WeightCodec::kEw4, 2, &report).ok());
  ASSERT_EQ(report.kept.size(), 1u) << report.Format();
  EXPECT_NE(report.kept[0].find("layer 1 o_proj: 6"), std::string::npos) << report.kept[0];
  EXPECT_NE(report.kept[0].find("% of its weights escape the ew4 window (the limit is 0.5 %)"),
            std::string::npos) << report.kept[0];
  EXPECT_EQ(w->layers[1].o.codec, WeightCodec::kBf16);
  EXPECT_EQ(w->layers[1].q.codec, WeightCodec::kEw4);
  EXPECT_EQ(w->CodecSummary(), "ew4+bf16");
  EXPECT_EQ(report.transcoded, 2 + 2 * 7 - 1);
}

TEST_F(WeightTranscodeTest, ServedBytesEstimatesAreClose) {
  TinyModelOptions o;
  o.hidden = 256;
  o.intermediate = 512;
  o.vocab = 2000;
  auto [bf16_dir, df11_dir] = model_testing::MakeBf16AndDf11(dir_, o, "m");
  const ModelWeights bf16 = Load(bf16_dir, WeightCodec::kBf16);
  const ModelWeights df11 = Load(df11_dir, WeightCodec::kDf11);
  const ModelWeights ew4 = Load(bf16_dir, WeightCodec::kEw4);
  for (WeightCodec codec : {WeightCodec::kEw4, WeightCodec::kDf11, WeightCodec::kBf16}) {
    SCOPED_TRACE(WeightCodecName(codec));
    const double exact = static_cast<double>(
        ServedBytes(codec == WeightCodec::kEw4 ? ew4 : codec == WeightCodec::kDf11 ? df11 : bf16,
                    codec));
    EXPECT_NEAR(static_cast<double>(ServedBytes(bf16, codec)), exact, 0.02 * exact);
    EXPECT_NEAR(static_cast<double>(ServedBytes(df11, codec)), exact, 0.02 * exact);
  }
  // ew4 weights take about 12/16 of BF16, DF11 about 11/16.
  EXPECT_LT(ew4.WeightBytes(), 0.77 * bf16.WeightBytes());
  EXPECT_LT(df11.WeightBytes(), ew4.WeightBytes());
}

}  // namespace
}  // namespace df11
