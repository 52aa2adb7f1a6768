// Making a message fit on one line meant for people (the examples' programs print one line a
// failure): line breaks out, and Boost's " [category:value at file:line]" tag off.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <vector>

namespace example_common {

/// `text` with every line break turned into a space.
inline std::string one_line(std::string text) {
  for (auto& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

/// Boost's system_error::what() ends in " [category:value]" (and a source location): noise on
/// a line meant for people, so it goes.
inline std::string strip_tag(std::string text, const boost::system::error_code& code) {
  const auto tag = " [" + std::string(code.category().name()) + ":";
  if (const auto at = text.rfind(tag); at != std::string::npos && text.back() == ']')
    text.erase(at);
  return text;
}

/// `e`'s message without that tag.
inline std::string describe(const boost::system::system_error& e) {
  return strip_tag(e.what(), e.code());
}

/// `list` split at every comma, empty items kept (so that "a,,b" can be refused, where a list
/// option of CLI11 would drop the empty item without a word).
inline std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> items;
  for (std::size_t start = 0;;) {
    const auto comma = list.find(',', start);
    items.push_back(list.substr(start, comma == std::string::npos ? comma : comma - start));
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

}  // namespace example_common
