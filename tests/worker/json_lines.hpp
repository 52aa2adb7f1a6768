// Reads leader-worker's --json output: one flat JSON object a line (strings, integers, booleans,
// null). Strict on purpose: a line that is not such an object is a test failure, not skipped.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace election::test {

using JsonValue = std::variant<std::nullptr_t, bool, std::int64_t, std::string>;
using JsonObject = std::map<std::string, JsonValue>;

namespace json_detail {

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  JsonObject object() {
    JsonObject result;
    skip_space();
    expect('{');
    skip_space();
    if (peek() == '}') {
      ++pos_;
    } else {
      for (;;) {
        skip_space();
        auto key = string();
        skip_space();
        expect(':');
        skip_space();
        if (!result.emplace(std::move(key), value()).second) fail("duplicate key");
        skip_space();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != text_.size()) fail("text after the object");
    return result;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error("bad JSON line (" + why + " at offset " + std::to_string(pos_) +
                             "): " + std::string(text_));
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\r' || text_[pos_] == '\n'))
      ++pos_;
  }
  bool literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  JsonValue value() {
    const char c = peek();
    if (c == '"') return string();
    if (literal("true")) return true;
    if (literal("false")) return false;
    if (literal("null")) return nullptr;
    if (c == '-' || (c >= '0' && c <= '9')) return integer();
    fail("expected a string, an integer, true, false or null");
  }

  std::int64_t integer() {
    const auto start = pos_;
    if (peek() == '-') ++pos_;
    if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit");
    if (peek() == '0' && pos_ + 1 < text_.size() && text_[pos_ + 1] >= '0' &&
        text_[pos_ + 1] <= '9')
      fail("leading zero");
    while (peek() >= '0' && peek() <= '9') ++pos_;
    if (peek() == '.' || peek() == 'e' || peek() == 'E') fail("only integers are expected");
    try {
      return std::stoll(std::string(text_.substr(start, pos_ - start)));
    } catch (const std::exception&) {
      fail("integer out of range");
    }
  }

  unsigned hex4() {
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = peek();
      code <<= 4;
      if (c >= '0' && c <= '9')
        code |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        code |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        code |= static_cast<unsigned>(c - 'A' + 10);
      else
        fail("bad \\u escape");
      ++pos_;
    }
    return code;
  }

  static void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xc0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xe0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (code & 0x3f));
    }
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= text_.size()) fail("unterminated string");
      const auto c = static_cast<unsigned char>(text_[pos_++]);
      if (c == '"') return out;
      if (c < 0x20) fail("unescaped control character");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      const char e = peek();
      ++pos_;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned code = hex4();
          if (code >= 0xd800 && code < 0xdc00) {
            if (!literal("\\u")) fail("lone high surrogate");
            const unsigned low = hex4();
            if (low < 0xdc00 || low > 0xdfff) fail("bad low surrogate");
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
          } else if (code >= 0xdc00 && code <= 0xdfff) {
            fail("lone low surrogate");
          }
          append_utf8(out, code);
          break;
        }
        default:
          fail("bad escape");
      }
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace json_detail

/// Parses one line; throws std::runtime_error naming the line when it is not a flat object.
inline JsonObject parse_json_object(std::string_view line) {
  return json_detail::Parser(line).object();
}

/// One line of leader-worker --json output, with typed access that fails loudly.
struct WorkerEvent {
  JsonObject fields;
  std::string line;

  bool has(const std::string& key) const { return fields.count(key) != 0; }
  std::string str(const std::string& key) const { return get<std::string>(key); }
  std::int64_t num(const std::string& key) const { return get<std::int64_t>(key); }
  bool flag(const std::string& key) const { return get<bool>(key); }
  std::string event() const { return str("event"); }
  std::string node() const { return str("node"); }
  std::int64_t mono_us() const { return num("mono_us"); }

 private:
  template <class T>
  T get(const std::string& key) const {
    auto it = fields.find(key);
    if (it == fields.end()) throw std::runtime_error("no \"" + key + "\" in: " + line);
    if (auto* value = std::get_if<T>(&it->second)) return *value;
    throw std::runtime_error("\"" + key + "\" has the wrong type in: " + line);
  }
};

/// Every complete line of `text` (a trailing line without its newline is still being written).
inline std::vector<WorkerEvent> parse_worker_events(const std::string& text) {
  std::vector<WorkerEvent> events;
  std::size_t start = 0;
  for (auto end = text.find('\n'); end != std::string::npos; end = text.find('\n', start)) {
    std::string line = text.substr(start, end - start);
    start = end + 1;
    events.push_back({parse_json_object(line), std::move(line)});
  }
  return events;
}

}  // namespace election::test
