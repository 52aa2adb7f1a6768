// The campaign protocol's decisions, step by step, without etcd: the win decided from a
// contiguous view, or from a read after a gap in the watch; and the takeover delay that a
// vacancy calls for.
#include "engine/campaign_engine.hpp"

#include <boost/asio/error.hpp>
#include <catch2/catch.hpp>

using election::errc;
using election::detail::CampaignEngine;
using namespace std::chrono_literals;
using Do = CampaignEngine::Do;
using View = CampaignEngine::View;
using Found = CampaignEngine::Found;

namespace {

constexpr std::int64_t lease = 7;

CampaignEngine engine(std::chrono::milliseconds delay = 0ms) {
  return CampaignEngine({delay, 5s, 500ms});
}

// A contiguous view at `revision`: the head's create revision and this key's, if in line. The
// last vacancy was signed unless said otherwise.
View view(std::int64_t revision, std::optional<std::int64_t> first, std::optional<std::int64_t> own,
          bool contiguous = true) {
  View v;
  v.synced = true;
  v.revision = revision;
  v.first = first;
  v.own = own;
  v.own_lease = own ? lease : 0;
  v.contiguous = contiguous;
  v.vacancy_signed = true;
  return v;
}

View unsigned_vacancy(View v, std::chrono::milliseconds ago) {
  v.vacancy_signed = false;
  v.since_vacancy = ago;
  return v;
}

// A view no newer than the confirming reads below: it tells them nothing they do not know.
const View behind = view(25, 20, 20, false);

// Granted lease 7, in line with create revision 20 as of revision 20.
CampaignEngine in_line(std::chrono::milliseconds delay = 0ms) {
  auto e = engine(delay);
  REQUIRE(e.start(std::nullopt).what == Do::grant);
  REQUIRE(e.granted(lease).what == Do::enter);
  REQUIRE(e.entered(20, 20).what == Do::wait);
  return e;
}

}  // namespace

TEST_CASE("a contiguous view decides the win: no read", "[campaign-engine]") {
  auto e = in_line();
  CHECK(e.viewed(view(20, 10, 20), true).what == Do::wait);  // someone ahead
  const auto won = e.viewed(view(25, 20, 20), true);
  CHECK(won.what == Do::lead);
  CHECK(e.read_revision() == 25);  // the term watches from after the view's revision
  CHECK(e.own_revision() == 20);
}

TEST_CASE("after a gap in the watch the win is confirmed by a read", "[campaign-engine]") {
  auto e = in_line();
  // The view was rebuilt by a read after a compaction since the key entered.
  REQUIRE(e.viewed(view(25, 20, 20, false), true).what == Do::confirm);
  const auto won = e.confirmed(Found{20, lease}, 26, true, behind);
  CHECK(won.what == Do::lead);
  CHECK(e.read_revision() == 26);
}

TEST_CASE("a live lease is used: no grant", "[campaign-engine]") {
  auto e = engine();
  CHECK(e.start(lease).what == Do::enter);
  CHECK(e.lease() == lease);
}

TEST_CASE("a view older than the key's entry says nothing about the key", "[campaign-engine]") {
  auto e = in_line();
  CHECK(e.viewed(View{}, true).what == Do::wait);                     // not read yet
  CHECK(e.viewed(view(19, 5, std::nullopt), true).what == Do::wait);  // before the entry
  CHECK(e.reentries() == 0);
}

TEST_CASE("a key gone from a current view goes back in line, at the back", "[campaign-engine]") {
  auto e = in_line();
  CHECK(e.viewed(view(30, 10, std::nullopt), true).what == Do::enter);  // an operator's delete
  CHECK(e.reentries() == 1);
  CHECK(e.entered(31, 31).what == Do::wait);
  CHECK(e.viewed(view(31, 10, 31), true).what == Do::wait);
  CHECK(e.viewed(view(40, 31, 31), true).what == Do::lead);
  CHECK(e.own_revision() == 31);
}

TEST_CASE("a key of another create revision or lease under the same name is not this one",
          "[campaign-engine]") {
  auto e = in_line();
  CHECK(e.viewed(view(30, 10, 28), true).what == Do::enter);
  REQUIRE(e.entered(31, 31).what == Do::wait);
  auto other = view(32, 31, 31);
  other.own_lease = 9;  // put again without this campaign's lease
  CHECK(e.viewed(other, true).what == Do::enter);
}

TEST_CASE("after a gap, a read that does not find the key puts it in line again",
          "[campaign-engine]") {
  auto e = in_line();
  REQUIRE(e.viewed(view(25, 20, 20, false), true).what == Do::confirm);
  CHECK(e.confirmed(std::nullopt, 27, true, behind).what == Do::enter);  // gone in etcd
  CHECK(e.reentries() == 1);
  REQUIRE(e.entered(28, 28).what == Do::wait);
  REQUIRE(e.viewed(view(28, 28, 28, false), true).what == Do::confirm);
  // Found, but under another lease, or re-created: not this campaign's key either.
  CHECK(e.confirmed(Found{28, 9}, 29, true, behind).what == Do::enter);
  REQUIRE(e.entered(30, 30).what == Do::wait);
  REQUIRE(e.viewed(view(30, 30, 30, false), true).what == Do::confirm);
  CHECK(e.confirmed(Found{29, lease}, 31, true, behind).what == Do::enter);
}

TEST_CASE("a win past the local deadline waits for a renewal before it counts",
          "[campaign-engine]") {
  auto e = in_line();
  const auto step = e.viewed(view(25, 20, 20), false);
  CHECK(step.what == Do::await_renewal);
  CHECK(step.delay == 5s);
  REQUIRE(e.renewed(true).what == Do::wait);  // the view again, then the win
  CHECK(e.viewed(view(26, 20, 20), true).what == Do::lead);
  CHECK(e.read_revision() == 26);

  auto read = in_line();  // the same after a gap: the read, then the renewal
  REQUIRE(read.viewed(view(25, 20, 20, false), false).what == Do::confirm);
  CHECK(read.confirmed(Found{20, lease}, 26, false, behind).what == Do::await_renewal);
}

TEST_CASE("a win past the deadline with no renewal in time fails", "[campaign-engine]") {
  auto e = in_line();
  REQUIRE(e.viewed(view(25, 20, 20), false).what == Do::await_renewal);
  const auto step = e.renewed(false);
  CHECK(step.what == Do::fail);
  CHECK(step.error == errc::lease_deadline_passed);
}

TEST_CASE("a head removed by its owner's signed resignation needs no takeover delay",
          "[campaign-engine]") {
  auto e = in_line(200ms);
  CHECK(e.viewed(view(25, 20, 20), true).what == Do::lead);
}

TEST_CASE("an unsigned vacancy waits what is left of the takeover delay, also after a renewal",
          "[campaign-engine]") {
  auto e = in_line(200ms);
  auto step = e.viewed(unsigned_vacancy(view(25, 20, 20), 0ms), true);
  CHECK(step.what == Do::settle);
  CHECK(step.delay == 200ms);
  REQUIRE(e.settled().what == Do::wait);
  CHECK(e.viewed(unsigned_vacancy(view(26, 20, 20), 200ms), true).what == Do::lead);

  auto later = in_line(200ms);  // seen 150 ms ago: 50 ms left
  step = later.viewed(unsigned_vacancy(view(25, 20, 20), 150ms), true);
  CHECK(step.what == Do::settle);
  CHECK(step.delay == 50ms);

  auto old = in_line(200ms);  // seen long ago: nothing left
  CHECK(old.viewed(unsigned_vacancy(view(25, 20, 20), 5s), true).what == Do::lead);

  auto late = in_line(200ms);
  REQUIRE(late.viewed(unsigned_vacancy(view(25, 20, 20), 0ms), false).what == Do::await_renewal);
  REQUIRE(late.renewed(true).what == Do::wait);
  step = late.viewed(unsigned_vacancy(view(25, 20, 20), 120ms), true);
  CHECK(step.what == Do::settle);
  CHECK(step.delay == 80ms);

  auto gap = in_line(200ms);  // after a gap, the read, then the delay
  REQUIRE(gap.viewed(unsigned_vacancy(view(25, 20, 20, false), 0ms), true).what == Do::confirm);
  step = gap.confirmed(Found{20, lease}, 26, true, behind);
  CHECK(step.what == Do::settle);
  CHECK(step.delay == 200ms);
}

TEST_CASE("a key deleted while the takeover delay or a renewal was waited for does not win",
          "[campaign-engine]") {
  // Found by the chaos deck in lock mode: the key was first after an unsigned vacancy, an
  // operator's delete took it during the 200 ms, and the win was declared for a key gone.
  auto e = in_line(200ms);
  REQUIRE(e.viewed(unsigned_vacancy(view(25, 20, 20), 0ms), true).what == Do::settle);
  REQUIRE(e.settled().what == Do::wait);
  CHECK(e.viewed(unsigned_vacancy(view(31, 30, std::nullopt), 200ms), true).what == Do::enter);
  CHECK(e.reentries() == 1);

  auto late = in_line();
  REQUIRE(late.viewed(view(25, 20, 20), false).what == Do::await_renewal);
  REQUIRE(late.renewed(true).what == Do::wait);
  CHECK(late.viewed(view(27, std::nullopt, std::nullopt), true).what == Do::enter);

  // After a gap the key is read again once the delay is over.
  auto gap = in_line(200ms);
  REQUIRE(gap.viewed(unsigned_vacancy(view(25, 20, 20, false), 0ms), true).what == Do::confirm);
  REQUIRE(gap.confirmed(Found{20, lease}, 26, true, behind).what == Do::settle);
  REQUIRE(gap.settled().what == Do::wait);
  REQUIRE(gap.viewed(unsigned_vacancy(view(26, 20, 20, false), 200ms), true).what == Do::confirm);
  CHECK(gap.confirmed(std::nullopt, 30, true, behind).what == Do::enter);

  // A read that found the key, answered after the view saw it go at a later revision.
  auto stale = in_line();
  REQUIRE(stale.viewed(view(25, 20, 20, false), true).what == Do::confirm);
  CHECK(stale.confirmed(Found{20, lease}, 26, true, view(27, 30, std::nullopt, false)).what ==
        Do::enter);
  auto fresh = in_line();  // the view newer, the key still there: the win
  REQUIRE(fresh.viewed(view(25, 20, 20, false), true).what == Do::confirm);
  CHECK(fresh.confirmed(Found{20, lease}, 26, true, view(27, 20, 20, false)).what == Do::lead);
}

TEST_CASE("the takeover delay is waited once for a place in line, again after a re-entry",
          "[campaign-engine]") {
  // A feed that reads the line again reports a vacancy seen then, though this key stayed first:
  // waiting again for it would wait forever behind a feed re-read every delay.
  auto e = in_line(200ms);
  REQUIRE(e.viewed(unsigned_vacancy(view(25, 20, 20), 0ms), true).what == Do::settle);
  REQUIRE(e.settled().what == Do::wait);
  CHECK(e.viewed(unsigned_vacancy(view(26, 20, 20), 0ms), true).what == Do::lead);

  auto again = in_line(200ms);  // deleted while it waited: the new place waits its own delay
  REQUIRE(again.viewed(unsigned_vacancy(view(25, 20, 20), 0ms), true).what == Do::settle);
  REQUIRE(again.settled().what == Do::wait);
  REQUIRE(again.viewed(unsigned_vacancy(view(27, std::nullopt, std::nullopt), 0ms), true).what ==
          Do::enter);
  REQUIRE(again.entered(28, 28).what == Do::wait);
  const auto step = again.viewed(unsigned_vacancy(view(28, 28, 28), 0ms), true);
  CHECK(step.what == Do::settle);
  CHECK(step.delay == 200ms);
}

TEST_CASE("a lost lease ends the campaign with its reason", "[campaign-engine]") {
  auto e = in_line();
  const auto step = e.lease_lost(errc::lease_expired);
  CHECK(step.what == Do::fail);
  CHECK(step.error == errc::lease_expired);
}

TEST_CASE(
    "etcd out of reach: entering and confirming pause and try again but other failures end it",
    "[campaign-engine]") {
  auto e = engine();
  REQUIRE(e.start(lease).what == Do::enter);
  auto step = e.failed(Do::enter, errc::unreachable, "campaign: no connection");
  CHECK(step.what == Do::pause);
  CHECK(step.delay == 500ms);
  CHECK(e.paused().what == Do::enter);
  REQUIRE(e.entered(20, 20).what == Do::wait);
  REQUIRE(e.viewed(view(21, 20, 20, false), true).what == Do::confirm);
  CHECK(e.failed(Do::confirm, errc::timeout, "range").what == Do::pause);
  CHECK(e.paused().what == Do::confirm);
  const auto denied = e.failed(Do::confirm, errc::permission_denied, "range: permission denied");
  CHECK(denied.what == Do::fail);
  CHECK(denied.error == errc::permission_denied);
  CHECK(denied.message == "range: permission denied");
  CHECK(e.failed(Do::wait, errc::auth_failed, "watch").what == Do::fail);
}

TEST_CASE("a try fails with lock_held once another key is first, and wins a free line",
          "[campaign-engine]") {
  auto tried = [](std::chrono::milliseconds delay) {
    auto e = CampaignEngine({delay, 5s, 500ms, true});
    REQUIRE(e.start(std::nullopt).what == Do::grant);
    REQUIRE(e.granted(lease).what == Do::enter);
    REQUIRE(e.entered(20, 20).what == Do::wait);
    return e;
  };
  auto held = tried(0ms);
  CHECK(held.viewed(view(19, 10, std::nullopt), true).what == Do::wait);  // behind the entry
  const auto refused = held.viewed(view(20, 10, 20), true);
  CHECK(refused.what == Do::fail);
  CHECK(refused.error == errc::lock_held);
  CHECK(refused.message.find("create revision 10") != std::string::npos);

  auto free = tried(0ms);
  CHECK(free.viewed(view(20, 20, 20), true).what == Do::lead);
  // Free, but its last holder's key went unsigned just now: the delay first, as for a wait.
  auto taken = tried(200ms);
  const auto settle = taken.viewed(unsigned_vacancy(view(20, 20, 20), 50ms), true);
  CHECK(settle.what == Do::settle);
  CHECK(settle.delay == 150ms);
  // Without the try, the same view waits in line.
  auto waits = in_line();
  CHECK(waits.viewed(view(20, 10, 20), true).what == Do::wait);
}
