// Unique names, so tests sharing one etcd never see each other's keys.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include <unistd.h>

namespace election::test {

inline std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return "test/" + prefix + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(now % 1000000007) + "-" + std::to_string(counter++);
}

}  // namespace election::test
