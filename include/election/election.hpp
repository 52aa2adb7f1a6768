// Umbrella header for the election library.
#pragma once

#include "election/client.hpp"
#include "election/clock.hpp"
#include "election/error.hpp"
#include "election/first_of.hpp"
#include "election/leadership.hpp"
#include "election/lease.hpp"
#include "election/metrics.hpp"
#include "election/mutex.hpp"
#include "election/observer.hpp"
#include "election/options.hpp"
#include "election/participant.hpp"
#include "election/session.hpp"
#include "election/values.hpp"
