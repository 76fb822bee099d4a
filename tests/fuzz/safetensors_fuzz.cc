// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for SafetensorsFile::Open: the input is a whole file, placed in a memfd and
// opened through /proc/self/fd. Any input must give a Status or a file whose every tensor byte
// can be read (ASan/UBSan catch out-of-bounds spans and overflow).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/common/check.h"
#include "runtime/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = ::memfd_create("safetensors_fuzz", MFD_CLOEXEC);
  DF11_CHECK_MSG(fd >= 0, "memfd_create failed");
  size_t done = 0;
  while (done < size) {
    ssize_t w = ::write(fd, data + done, size - done);
    DF11_CHECK_MSG(w > 0, "write to memfd failed");
    done += static_cast<size_t>(w);
  }
  df11::StatusOr<df11::SafetensorsFile> file =
      df11::SafetensorsFile::Open("/proc/self/fd/" + std::to_string(fd));
  if (file.ok()) {
    uint8_t sink = 0;
    for (const df11::TensorInfo& t : file->tensors()) {
      DF11_CHECK(static_cast<uint64_t>(t.numel) * df11::DTypeSize(t.dtype) == t.bytes.size());
      DF11_CHECK(file->Find(t.name) == &t);
      for (uint8_t b : t.bytes) sink ^= b;
    }
    volatile uint8_t keep = sink;
    (void)keep;
  }
  ::close(fd);
  return 0;
}
