// SPDX-License-Identifier: Apache-2.0
#include "runtime/text/token_format.h"

#include <gtest/gtest.h>

namespace df11 {
namespace {

TEST(ParseTokenIdsTest, AcceptsCommasSpacesAndBrackets) {
  for (const char* text : {"1,2,3", "1 2 3", " [1, 2,\t3] ", "1,,2 , 3\n"}) {
    StatusOr<std::vector<int32_t>> ids = ParseTokenIds(text);
    ASSERT_TRUE(ids.ok()) << text << ": " << ids.status().ToString();
    EXPECT_EQ(*ids, (std::vector<int32_t>{1, 2, 3})) << text;
  }
  StatusOr<std::vector<int32_t>> empty = ParseTokenIds(" [] ");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ParseTokenIdsTest, RejectsBadItemsNamingThem) {
  for (const char* text : {"1, x2, 3", "1 -4", "1 99999999999", "1 2.5"}) {
    StatusOr<std::vector<int32_t>> ids = ParseTokenIds(text);
    ASSERT_FALSE(ids.ok()) << text;
    EXPECT_EQ(ids.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(ids.status().message().find("offset"), std::string::npos);
  }
  EXPECT_NE(ParseTokenIds("1, x2").status().message().find("\"x2\" at offset 3"),
            std::string::npos);
}

TEST(EscapeTokenBytesTest, KeepsPrintableCharactersAndEscapesTheRest) {
  EXPECT_EQ(EscapeTokenBytes("Hello"), "Hello");
  EXPECT_EQ(EscapeTokenBytes(" a\n\t\\"), " a\\n\\t\\\\");
  EXPECT_EQ(EscapeTokenBytes("你好"), "你好");
  EXPECT_EQ(EscapeTokenBytes("\xF0\x9F"), "\\xF0\\x9F");  // half an emoji
  EXPECT_EQ(EscapeTokenBytes(std::string("\0\x7F", 2)), "\\x00\\x7F");
}

}  // namespace
}  // namespace df11
