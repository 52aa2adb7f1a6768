// The keys of an election, as etcd's election protocol lays them out: pure functions, no I/O.
// Private to the library.
#pragma once

#include <cstdint>
#include <string>

namespace election::detail {

/// The end of the key range that holds every key starting with `prefix`.
inline std::string prefix_end(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) < 0xff) {
      prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // all keys
}

/// The candidate key etcd's election protocol uses for a lease: name + "/" + lowercase hex of
/// the lease.
std::string candidate_key(const std::string& election, std::int64_t lease);

/// Where a resignation is signed: `election + "0" + NUL + hex(lease)`. Outside the election's
/// prefix (`election/`, whose keys etcdctl elect and etcd's own clients all take for
/// candidates), and right after it in key order (prefix_end("election/") is "election0"), so
/// that one watch of [election/, resignations_end(election)) sees a resignation's deletion and
/// its signature in the same revision, and nothing else: "election0/..." (an election named
/// "election0") sorts after the range.
std::string resignation_key(const std::string& election, std::int64_t lease);
/// The end of the range an election's feed watches: its candidates and its resignations.
std::string resignations_end(const std::string& election);
/// Whether `key` is a resignation's signature of `election`.
bool is_resignation(const std::string& election, const std::string& key);

}  // namespace election::detail
