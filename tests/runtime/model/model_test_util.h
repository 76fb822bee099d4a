// SPDX-License-Identifier: Apache-2.0
// Shared by the forward-pass tests: a tiny model made in a temporary folder, as BF16 and as its
// DF11 compression.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "runtime/convert/compress.h"
#include "runtime/formats/tiny_model.h"

namespace df11::model_testing {

// Makes the model `o` as dir/name and its DF11 copy as dir/name.df11; returns both paths.
inline std::pair<std::string, std::string> MakeBf16AndDf11(const std::string& dir,
                                                           const TinyModelOptions& o,
                                                           const std::string& name) {
  const std::string bf16 = dir + "/" + name, df11 = bf16 + ".df11";
  Status s = MakeTinyModel(o, bf16);
  EXPECT_TRUE(s.ok()) << s.ToString();
  CompressOptions c;
  c.show_progress = false;
  auto summary = CompressModel(bf16, df11, c);
  EXPECT_TRUE(summary.ok()) << summary.status().ToString();
  return {bf16, df11};
}

}  // namespace df11::model_testing
