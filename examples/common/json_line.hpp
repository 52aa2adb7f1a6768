// The examples' --json lines (leader-worker's, lock-exec's): one flat JSON object a line,
// written by Boost.JSON.
//
//   example_common::json_line({{"event", "elected"}, {"rev", 42}, {"ok", true}});
//   // {"event":"elected","rev":42,"ok":true}
//
// Boost.JSON copies a string's bytes as they are, but a node name, a lock name, a command or an
// etcd value need not be UTF-8, and one stray byte would make the whole line unreadable to jq or
// any strict parser. So every string is made valid UTF-8 first: bytes that are not become U+FFFD.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace example_common {

/// `text` with every byte that does not belong to a well-formed UTF-8 sequence replaced by
/// U+FFFD, one replacement a byte (overlong forms, surrogates and anything above U+10FFFF are
/// not well-formed).
inline std::string valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    // The length a lead byte announces, and the range its second byte must be in: that range is
    // what rules out overlong forms (E0, F0), surrogates (ED) and code points past U+10FFFF (F4).
    std::size_t length = 1;
    unsigned char low = 0x80, high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead == 0xe0) low = 0xa0;
      if (lead == 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead == 0xf0) low = 0x90;
      if (lead == 0xf4) high = 0x8f;
    } else if (lead >= 0x80) {
      length = 0;  // a continuation byte on its own, or a lead byte no sequence starts with
    }
    bool valid = length != 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      valid = k == 1 ? next >= low && next <= high : next >= 0x80 && next <= 0xbf;
    }
    if (valid) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    }
  }
  return out;
}

/// The line for `fields`, without a newline. Boost.JSON keeps the fields in the order given.
inline std::string json_line(boost::json::object fields) {
  // Here rather than at each call site, so that no string can be forgotten.
  for (auto& field : fields)
    if (auto* text = field.value().if_string()) *text = valid_utf8(*text);
  return boost::json::serialize(fields);
}

}  // namespace example_common
