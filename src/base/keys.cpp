#include "base/keys.hpp"

#include "election/values.hpp"

#include <cstdio>

namespace election {

std::string lease_hex(std::int64_t id) {
  char hex[24];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(id));
  return hex;
}

}  // namespace election

namespace election::detail {

std::string candidate_key(const std::string& election, std::int64_t lease) {
  return election + "/" + lease_hex(lease);
}

std::string resignation_key(const std::string& election, std::int64_t lease) {
  std::string key = election;
  key += '0';
  key += '\0';
  key += lease_hex(lease);
  return key;
}

std::string resignations_end(const std::string& election) {
  std::string end = election;
  end += '0';
  end += '\1';
  return end;
}

bool is_resignation(const std::string& election, const std::string& key) {
  return key.size() > election.size() + 2 && key.compare(0, election.size(), election) == 0 &&
         key[election.size()] == '0' && key[election.size() + 1] == '\0';
}

}  // namespace election::detail
