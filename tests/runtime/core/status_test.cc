// SPDX-License-Identifier: Apache-2.0
#include "runtime/core/status.h"

#include <gtest/gtest.h>

namespace df11 {
namespace {

StatusOr<int> ParsePositive(int v) {
  if (v <= 0) return Status::InvalidArgument("value: expected > 0, got " + std::to_string(v));
  return v;
}

Status Twice(int v, int* out) {
  DF11_ASSIGN_OR_RETURN(int x, ParsePositive(v));
  *out = 2 * x;
  return Status::Ok();
}

TEST(StatusTest, ErrorsCarryCodeAndMessage) {
  int out = 0;
  Status s = Twice(-3, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.ToString(), "Invalid argument: value: expected > 0, got -3");
  EXPECT_EQ(s.WithContext("flag --n").message(), "flag --n: value: expected > 0, got -3");
  EXPECT_EQ(out, 0);
  ASSERT_TRUE(Twice(4, &out).ok());
  EXPECT_EQ(out, 8);
}

}  // namespace
}  // namespace df11
