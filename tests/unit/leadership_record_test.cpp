// What a Leadership's record tells its hooks, without etcd.
#include "api/leadership_record.hpp"

#include <catch2/catch.hpp>

#include <vector>

using election::detail::LeadershipRecord;
using election::detail::TimeSource;
using namespace std::chrono_literals;

TEST_CASE("the campaigning hook names each lease a campaign waits in line with, once",
          "[leadership-record]") {
  // Found by the chaos deck in lock mode: the lease acquired for a campaign was lost before
  // its key entered the line, the campaign granted another, and the hook had named only the
  // first, so the writes under the second could not be told apart from a stranger's.
  TimeSource time;
  std::vector<std::int64_t> told;
  election::LeadershipHooks hooks;
  hooks.campaigning = [&](const election::CampaignStarted& c) { told.push_back(c.lease); };
  LeadershipRecord record(time, hooks, 1s, 10s);

  record.campaigning();
  record.lease_in_use(7, 3s);  // acquired
  record.in_line();
  record.lease_in_use(7, 3s);  // in line with it: nothing new
  CHECK(told == std::vector<std::int64_t>{7});
  record.lease_in_use(9, 3s);  // in line with another, granted by the campaign
  CHECK(told == std::vector<std::int64_t>{7, 9});
  record.campaign_over();

  record.campaigning();  // the next campaign, on the same lease: named again
  record.lease_in_use(9, 3s);
  CHECK(told == std::vector<std::int64_t>{7, 9, 9});
}
