// SPDX-License-Identifier: Apache-2.0
// Df11DecodeCuda on the reference encoder's units (tests/data/ref_units, see its manifest.json):
// each unit and each of its matrices decodes on the device bit-exactly to the BF16 originals
// stored beside it. Reads them with the runtime's loader, so this binary links df11_formats
// (and glog); the pure kernel tests are in df11_decode_cuda_test. Skips without a CUDA device.
// DF11_TEST_DATA_DIR in the environment overrides the compiled-in data folder.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kernels/common/cuda_check.h"
#include "kernels/dfloat11/df11_device_unit.h"
#include "runtime/core/file_util.h"
#include "runtime/formats/df11_unit.h"

namespace df11 {
namespace {

std::string RefDir() {
  const char* env = std::getenv("DF11_TEST_DATA_DIR");
  return std::string(env != nullptr ? env : DF11_TEST_DATA_DIR) + "/ref_units";
}

// The unit's BF16 originals "<unit>.original.<i>", concatenated.
std::vector<uint16_t> Originals(const Checkpoint& ckpt, const std::string& unit, size_t n) {
  std::vector<uint16_t> all;
  for (size_t i = 0; i < n; ++i) {
    const TensorInfo* t = ckpt.Find(unit + ".original." + std::to_string(i));
    EXPECT_NE(t, nullptr) << unit << " original " << i;
    if (t == nullptr) return all;
    EXPECT_EQ(t->dtype, DType::kBF16);
    const size_t at = all.size();
    all.resize(at + t->numel);
    std::memcpy(all.data() + at, t->bytes.data(), t->bytes.size());
  }
  return all;
}

// Decodes [begin, end) into a poisoned buffer; returns the error flag, fills *out.
int DecodeOnDevice(const Df11DeviceUnit& unit, int64_t begin, int64_t end, cudaStream_t stream,
                   std::vector<uint16_t>* out) {
  const int64_t n = end - begin;
  out->assign(n, 0xDEAD);
  void* d_out = nullptr;
  void* d_flag = nullptr;
  DF11_CUDA_CHECK(cudaMalloc(&d_out, std::max<int64_t>(n, 1) * sizeof(uint16_t)));
  DF11_CUDA_CHECK(cudaMalloc(&d_flag, sizeof(int)));
  DF11_CUDA_CHECK(cudaMemcpy(d_out, out->data(), n * sizeof(uint16_t), cudaMemcpyHostToDevice));
  DF11_CUDA_CHECK(cudaMemset(d_flag, 0, sizeof(int)));
  // The poison and the flag's reset land before the decode on the non-blocking stream starts.
  DF11_CUDA_CHECK(cudaDeviceSynchronize());
  Df11DecodeCuda(unit, begin, end, static_cast<uint16_t*>(d_out), static_cast<int*>(d_flag),
                 stream);
  DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
  int flag = 0;
  DF11_CUDA_CHECK(cudaMemcpy(out->data(), d_out, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  DF11_CUDA_CHECK(cudaMemcpy(&flag, d_flag, sizeof(int), cudaMemcpyDeviceToHost));
  DF11_CUDA_CHECK(cudaFree(d_out));
  DF11_CUDA_CHECK(cudaFree(d_flag));
  return flag;
}

TEST(Df11DecodeCudaRefUnits, EveryReferenceUnitDecodesBitExactly) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();
    GTEST_SKIP() << "no CUDA device";
  }
  auto manifest_text = ReadFileToString(RefDir() + "/manifest.json");
  ASSERT_TRUE(manifest_text.ok()) << manifest_text.status().ToString();
  const auto manifest = nlohmann::json::parse(*manifest_text);
  auto ckpt = Checkpoint::Open(RefDir());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  cudaStream_t stream;
  DF11_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  int checked = 0;
  for (const auto& entry : manifest["units"]) {
    const std::string name = entry["name"];
    SCOPED_TRACE(name);
    auto unit = LoadDf11Unit(*ckpt, name);
    ASSERT_TRUE(unit.ok()) << unit.status().ToString();
    const std::vector<uint16_t> expected = Originals(*ckpt, name, entry["shapes"].size());
    ASSERT_EQ(static_cast<int64_t>(expected.size()), unit->n_elements());
    Df11DeviceBuffer device(unit->view);
    std::vector<uint16_t> out;
    EXPECT_EQ(DecodeOnDevice(device.unit(), 0, unit->n_elements(), stream, &out), 0);
    EXPECT_EQ(out, expected);
    for (size_t m = 0; m <= unit->split_positions.size(); ++m) {
      const auto [b, e] = unit->MatrixRange(m);
      SCOPED_TRACE("matrix " + std::to_string(m));
      EXPECT_EQ(DecodeOnDevice(device.unit(), b, e, stream, &out), 0);
      EXPECT_TRUE(std::equal(out.begin(), out.end(), expected.begin() + b));
    }
    // An odd range inside the unit.
    const int64_t n = unit->n_elements();
    const int64_t begin = std::min(n, n / 3 + 1), end = std::min(n, 2 * (n / 3) + 3);
    EXPECT_EQ(DecodeOnDevice(device.unit(), begin, end, stream, &out), 0);
    EXPECT_TRUE(std::equal(out.begin(), out.end(), expected.begin() + begin));
    ++checked;
  }
  DF11_CUDA_CHECK(cudaStreamDestroy(stream));
  EXPECT_GE(checked, 7);
}

}  // namespace
}  // namespace df11
