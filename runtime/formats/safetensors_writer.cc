// SPDX-License-Identifier: Apache-2.0
// SafetensorsWriter: header as insertion-ordered JSON, then the raw tensor bytes through write(2)
// with partial-write and EINTR handling, fsync, rename, and a best-effort fsync of the directory.
#include "runtime/formats/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include <nlohmann/json.hpp>

namespace df11 {
namespace {

// Writes all of `bytes` to `fd`, retrying short writes and EINTR.
bool WriteAll(int fd, const uint8_t* bytes, size_t n) {
  while (n > 0) {
    // Large single writes are split so a 2 GiB+ tensor never hits the kernel's per-call cap.
    ssize_t w = ::write(fd, bytes, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

Status WriteError(const std::string& what, const std::string& path, int err) {
  return Status::IoError(path + ": " + what + " failed: " + std::strerror(err));
}

}  // namespace

Status SafetensorsWriter::AddTensor(std::string name, DType dtype, std::vector<int64_t> shape,
                                    std::span<const uint8_t> bytes) {
  if (name.empty()) return Status::InvalidArgument("safetensors writer: empty tensor name");
  if (name == "__metadata__") {
    return Status::InvalidArgument("safetensors writer: \"__metadata__\" is reserved, not a tensor");
  }
  if (names_.count(name) != 0) {
    return Status::InvalidArgument("safetensors writer: duplicate tensor \"" + name + "\"");
  }
  int64_t numel = 1;
  for (int64_t dim : shape) {
    if (dim < 0) {
      return Status::InvalidArgument("safetensors writer: tensor \"" + name +
                                     "\": negative dimension " + std::to_string(dim));
    }
    if (__builtin_mul_overflow(numel, dim, &numel)) {
      return Status::InvalidArgument("safetensors writer: tensor \"" + name +
                                     "\": element count overflows 64 bits");
    }
  }
  int64_t expected = 0;
  if (__builtin_mul_overflow(numel, static_cast<int64_t>(DTypeSize(dtype)), &expected) ||
      static_cast<uint64_t>(expected) != bytes.size()) {
    return Status::InvalidArgument(
        "safetensors writer: tensor \"" + name + "\": got " + std::to_string(bytes.size()) +
        " bytes; expected " + std::to_string(numel) + " elements x " +
        std::to_string(DTypeSize(dtype)) + " bytes (" + std::string(DTypeName(dtype)) + ")");
  }
  names_.insert(name);
  tensors_.push_back(Pending{std::move(name), dtype, std::move(shape), bytes, {}});
  return Status::Ok();
}

Status SafetensorsWriter::AddOwnedTensor(std::string name, DType dtype, std::vector<int64_t> shape,
                                         std::vector<uint8_t> bytes) {
  // The vector's heap buffer does not move when the vector is moved into Pending below.
  std::span<const uint8_t> view(bytes.data(), bytes.size());
  DF11_RETURN_IF_ERROR(AddTensor(std::move(name), dtype, std::move(shape), view));
  tensors_.back().owned = std::move(bytes);
  return Status::Ok();
}

std::string SafetensorsWriter::HeaderJson() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Pending& t : tensors_) {
    nlohmann::ordered_json entry;
    entry["dtype"] = std::string(DTypeName(t.dtype));
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + t.bytes.size()};
    header[t.name] = std::move(entry);
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

uint64_t SafetensorsWriter::FileSize() const {
  uint64_t size = 8 + HeaderJson().size();
  for (const Pending& t : tensors_) size += t.bytes.size();
  return size;
}

Status SafetensorsWriter::Write(const std::string& path) const {
  const std::string header = HeaderJson();
  if (header.size() > SafetensorsFile::kMaxHeaderBytes) {
    return Status::InvalidArgument(path + ": header would be " + std::to_string(header.size()) +
                                   " bytes; readers accept at most " +
                                   std::to_string(SafetensorsFile::kMaxHeaderBytes));
  }
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return WriteError("create", tmp, errno);
  int err = 0;
  bool ok = WriteAll(fd, length, sizeof(length)) &&
            WriteAll(fd, reinterpret_cast<const uint8_t*>(header.data()), header.size());
  for (size_t i = 0; ok && i < tensors_.size(); ++i) {
    ok = WriteAll(fd, tensors_[i].bytes.data(), tensors_[i].bytes.size());
  }
  ok = ok && ::fsync(fd) == 0;
  if (!ok) err = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    return WriteError("write", tmp, err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    return WriteError("rename to final name", path, err);
  }
  // Persist the rename itself; some filesystems cannot fsync a directory, which is not an error.
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
  return Status::Ok();
}

}  // namespace df11
