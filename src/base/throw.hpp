// How the library throws its own failures. Private: users catch election::error.
#pragma once

#include "election/error.hpp"

#include <string>

namespace election {

/// Throws election::error for `e`, with `detail` (what was being done, and why) before the
/// code's message. No server message: the failure is the library's own.
[[noreturn]] void throw_error(errc e, const std::string& detail);

}  // namespace election
