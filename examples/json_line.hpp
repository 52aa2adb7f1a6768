// One JSON object per line, built field by field: just enough JSON for leader-worker's --json.
//
//   JsonLine line;
//   line.string("event", "elected").number("rev", 42).boolean("ok", true);
//   line.str();  // {"event":"elected","rev":42,"ok":true}
//
// Strings are escaped for JSON, and bytes that are not valid UTF-8 become U+FFFD, so every line
// is valid JSON whatever a node name or an etcd value holds.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace leader_worker {

/// Appends `text` to `out` as a JSON string literal, quotes included.
inline void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 0xf];
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // A multi-byte UTF-8 sequence is copied whole if it is well-formed (no overlong forms, no
    // surrogates, nothing above U+10FFFF); anything else is replaced, one byte at a time.
    std::size_t length = 0;
    std::uint32_t min = 0;
    if ((c & 0xe0) == 0xc0) {
      length = 2, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      length = 3, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      length = 4, min = 0x10000;
    }
    bool valid = length != 0 && i + length <= text.size();
    std::uint32_t code = length == 2 ? (c & 0x1f) : length == 3 ? (c & 0x0f) : (c & 0x07);
    for (std::size_t k = 1; valid && k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      valid = (next & 0xc0) == 0x80;
      code = (code << 6) | (next & 0x3f);
    }
    valid = valid && code >= min && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff);
    if (valid) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
}

/// A flat JSON object under construction. The method names differ by type on purpose: with
/// overloads, a string literal would silently pick the `bool` one.
class JsonLine {
 public:
  JsonLine& string(std::string_view key, std::string_view value) {
    start(key);
    append_json_string(body_, value);
    return *this;
  }
  JsonLine& number(std::string_view key, std::int64_t value) {
    start(key);
    body_ += std::to_string(value);
    return *this;
  }
  JsonLine& boolean(std::string_view key, bool value) {
    start(key);
    body_ += value ? "true" : "false";
    return *this;
  }
  /// Appends the fields of `other` after these.
  JsonLine& append(const JsonLine& other) {
    if (!other.body_.empty()) {
      if (!body_.empty()) body_ += ',';
      body_ += other.body_;
    }
    return *this;
  }

  /// The object, without a newline.
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void start(std::string_view key) {
    if (!body_.empty()) body_ += ',';
    append_json_string(body_, key);
    body_ += ':';
  }

  std::string body_;
};

}  // namespace leader_worker
