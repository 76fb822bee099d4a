// SPDX-License-Identifier: Apache-2.0
// Serving weights in another codec than the files store (`--weight-codec`): every matrix of a
// loaded model (BF16, DF11 or ew4, whole directory or a rank's shard) is decoded to BF16 and
// re-encoded, one matrix at a time, so peak memory is the result plus one matrix. Lossless: the
// decoded weights are the files' bit for bit, so a BF16 and a DF11 source served with the same
// codec hold identical weights and give identical logits.
// ew4 is not used for a matrix whose escape rate exceeds kEw4MaxEscapeRate (ew4_encode.h: the
// window leaves too many weights out, it would be larger and slower); such a matrix keeps its
// stored codec.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/model/model_weights.h"

namespace df11 {

struct TranscodeReport {
  WeightCodec target = WeightCodec::kBf16;
  int64_t transcoded = 0;         // matrices re-encoded into the target
  std::vector<std::string> kept;  // "<matrix>: <why>" for matrices that kept their codec
  double seconds = 0;
  // One line: "transcoded N matrices to ew4 in S s (M kept: ...)".
  std::string Format() const;
};

// Re-encodes every matrix of `w` that is not in `target` (a tied LM head stays the embedding),
// then ModelWeights::Finish (units no matrix uses are freed). Matrices that cannot take the
// target keep their codec and are listed in the report: ew4 above kEw4MaxEscapeRate, DF11 for
// values it cannot code (exponent >= 240). Corruption when a DF11 source stream is corrupt.
Status TranscodeWeights(ModelWeights* w, WeightCodec target, int threads, TranscodeReport* report);

// Bytes the weights of `w` take served in `codec`, with the decode scratch that codec needs:
// exact for matrices already in it, estimated for the others (DF11 at 10.87 bits per weight,
// ew4 with 0.05 % escapes). What `--weight-codec auto` compares before transcoding.
int64_t ServedBytes(const ModelWeights& w, WeightCodec codec);

// A matrix's BF16 weights (rows, cols) into `out`, whatever its codec.
Status DecodeWeight(const Weight& m, int threads, std::vector<uint16_t>* out);

}  // namespace df11
