#include "base/throw.hpp"

namespace election {

void throw_error(errc e, const std::string& detail) { throw error(make_error_code(e), detail); }

}  // namespace election
