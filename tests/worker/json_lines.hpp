// Reads leader-worker's --json output: one flat JSON object a line (strings, integers, booleans,
// null), parsed by Boost.JSON. Strict on purpose: a line that is not such an object is a test
// failure, not skipped. Boost.JSON's defaults already refuse comments, trailing commas, invalid
// UTF-8 and text after the object; what it would accept beyond that (nesting, fractions,
// integers past int64) is refused here.
#pragma once

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace election::test {

using JsonValue = std::variant<std::nullptr_t, bool, std::int64_t, std::string>;
using JsonObject = std::map<std::string, JsonValue>;

/// Parses one line; throws std::runtime_error naming the line when it is not a flat object.
/// (Of a key given twice, Boost.JSON keeps the last: the writer, a boost::json::object, cannot
/// write one twice.)
inline JsonObject parse_json_object(std::string_view line) {
  const auto fail = [&](const std::string& why) {
    return std::runtime_error("bad JSON line (" + why + "): " + std::string(line));
  };
  boost::system::error_code ec;
  const auto parsed = boost::json::parse(line, ec);
  if (ec) throw fail(ec.message());
  const auto* object = parsed.if_object();
  if (!object) throw fail("not an object");
  JsonObject result;
  for (const auto& field : *object) {
    const auto& value = field.value();
    JsonValue converted;
    switch (value.kind()) {
      case boost::json::kind::null:
        converted = nullptr;
        break;
      case boost::json::kind::bool_:
        converted = value.get_bool();
        break;
      case boost::json::kind::int64:
        converted = value.get_int64();
        break;
      case boost::json::kind::string:
        converted = std::string(value.get_string());
        break;
      case boost::json::kind::uint64:
        throw fail("integer out of range");
      case boost::json::kind::double_:
        throw fail("only integers are expected");
      default:
        throw fail("only strings, integers, true, false and null are expected");
    }
    result.emplace(std::string(field.key()), std::move(converted));
  }
  return result;
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
