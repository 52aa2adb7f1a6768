// Reasons to keep something open that would otherwise close because it has nothing to do.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

namespace election::detail {

/// Counts the holds taken and not yet released. A hold is released when the last copy of the
/// returned pointer goes; `released` then runs if it was the last hold. Not thread-safe: take
/// and release holds on one executor.
class HoldCount {
 public:
  bool held() const { return *count_ > 0; }

  template <class Released>
  std::shared_ptr<void> take(Released released) {
    ++*count_;
    return {nullptr, [count = count_, released = std::move(released)](void*) mutable {
              if (--*count == 0) released();
            }};
  }

 private:
  std::shared_ptr<std::size_t> count_ = std::make_shared<std::size_t>(0);
};

}  // namespace election::detail
