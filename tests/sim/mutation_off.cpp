// The unit tests run the simulator's parts with every mutation point off.
#include "base/mutation.hpp"

bool election::detail::mutated(Mutation) noexcept { return false; }
