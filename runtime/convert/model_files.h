// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the model converters: copying a model directory's side files (tokenizer,
// generation config, ...) and BF16 views of tensors.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/safetensors.h"

namespace df11 {

// Copies every regular file of `src_dir` except weights (*.safetensors, the index) and the names
// in `skip` into `out_dir`.
Status CopySideFiles(const std::string& src_dir, const std::string& out_dir,
                     const std::vector<std::string>& skip);

// When `dir`/config.json describes a model this runtime serves (read with ConfigUse::kConvert),
// the BF16 weights of `ckpt` must be exactly the config's (CheckModelWeights). Other configs are
// not checked: converting is lossless and works for any model.
Status CheckBf16WeightsAgainstConfig(const std::string& dir, const Checkpoint& ckpt);

// The tensor's data as BF16 words: a view when the mapping is 2-byte aligned, else a copy kept
// in *storage. InvalidArgument when the tensor is not BF16.
StatusOr<std::span<const uint16_t>> Bf16Words(const TensorInfo& t, std::vector<uint16_t>* storage);

}  // namespace df11
