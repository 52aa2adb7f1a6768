// The campaign protocol's decisions, step by step, without etcd.
#include "campaign_engine.hpp"

#include <boost/asio/error.hpp>
#include <catch2/catch.hpp>

using election::errc;
using election::detail::CampaignEngine;
using namespace std::chrono_literals;
using Do = CampaignEngine::Do;
using View = CampaignEngine::View;
using Found = CampaignEngine::Found;

namespace {

CampaignEngine engine(std::chrono::milliseconds delay = 0ms) {
  return CampaignEngine({delay, 5s, 500ms});
}

View view(std::int64_t revision, std::optional<std::int64_t> first,
          std::optional<std::int64_t> own) {
  return View{true, revision, first, own};
}

// Granted lease 7, in line with create revision 20 as of revision 20.
CampaignEngine in_line(std::chrono::milliseconds delay = 0ms) {
  auto e = engine(delay);
  REQUIRE(e.start(std::nullopt).what == Do::grant);
  REQUIRE(e.granted(7).what == Do::enter);
  REQUIRE(e.entered(20, 20).what == Do::wait);
  return e;
}

}  // namespace

TEST_CASE("a campaign grants a lease, enters the line, waits, confirms and leads",
          "[campaign-engine]") {
  auto e = in_line();
  CHECK(e.viewed(view(20, 10, 20)).what == Do::wait);  // someone ahead
  CHECK(e.viewed(view(25, 20, 20)).what == Do::confirm);
  const auto won = e.confirmed(Found{20, 7}, 26, true);
  CHECK(won.what == Do::lead);
  CHECK(e.read_revision() == 26);
  CHECK(e.own_revision() == 20);
}

TEST_CASE("a live lease is used: no grant", "[campaign-engine]") {
  auto e = engine();
  CHECK(e.start(7).what == Do::enter);
  CHECK(e.lease() == 7);
}

TEST_CASE("a view older than the key's entry says nothing about the key", "[campaign-engine]") {
  auto e = in_line();
  CHECK(e.viewed(View{false, 0, {}, {}}).what == Do::wait);     // not read yet
  CHECK(e.viewed(view(19, 5, std::nullopt)).what == Do::wait);  // before the entry: no key yet
  CHECK(e.reentries() == 0);
}

TEST_CASE("a key gone from a current view goes back in line, at the back", "[campaign-engine]") {
  auto e = in_line();
  CHECK(e.viewed(view(30, 10, std::nullopt)).what == Do::enter);  // an operator's delete
  CHECK(e.reentries() == 1);
  CHECK(e.entered(31, 31).what == Do::wait);
  CHECK(e.viewed(view(31, 10, 31)).what == Do::wait);
  CHECK(e.viewed(view(40, 31, 31)).what == Do::confirm);
  CHECK(e.confirmed(Found{31, 7}, 40, true).what == Do::lead);
  CHECK(e.own_revision() == 31);
}

TEST_CASE("a key of another create revision under the same name is not this one",
          "[campaign-engine]") {
  auto e = in_line();
  CHECK(e.viewed(view(30, 10, 28)).what == Do::enter);
}

TEST_CASE("a lagging watch that crowns a deleted key is not believed: the read decides",
          "[campaign-engine]") {
  auto e = in_line();
  REQUIRE(e.viewed(view(25, 20, 20)).what == Do::confirm);
  CHECK(e.confirmed(std::nullopt, 27, true).what == Do::enter);  // gone in etcd
  CHECK(e.reentries() == 1);
  REQUIRE(e.entered(28, 28).what == Do::wait);
  REQUIRE(e.viewed(view(28, 28, 28)).what == Do::confirm);
  // Found, but under another lease, or re-created: not this campaign's key either.
  CHECK(e.confirmed(Found{28, 9}, 29, true).what == Do::enter);
  REQUIRE(e.entered(30, 30).what == Do::wait);
  REQUIRE(e.viewed(view(30, 30, 30)).what == Do::confirm);
  CHECK(e.confirmed(Found{29, 7}, 31, true).what == Do::enter);
}

TEST_CASE("a win past the local deadline waits for a renewal before it counts",
          "[campaign-engine]") {
  auto e = in_line();
  REQUIRE(e.viewed(view(25, 20, 20)).what == Do::confirm);
  const auto step = e.confirmed(Found{20, 7}, 26, false);
  CHECK(step.what == Do::await_renewal);
  CHECK(step.delay == 5s);
  CHECK(e.renewed(true).what == Do::lead);
}

TEST_CASE("a win past the deadline with no renewal in time fails", "[campaign-engine]") {
  auto e = in_line();
  REQUIRE(e.viewed(view(25, 20, 20)).what == Do::confirm);
  REQUIRE(e.confirmed(Found{20, 7}, 26, false).what == Do::await_renewal);
  const auto step = e.renewed(false);
  CHECK(step.what == Do::fail);
  CHECK(step.error == errc::lease_deadline_passed);
}

TEST_CASE("a takeover delay is waited out after the win, also after a late renewal",
          "[campaign-engine]") {
  auto e = in_line(200ms);
  REQUIRE(e.viewed(view(25, 20, 20)).what == Do::confirm);
  auto step = e.confirmed(Found{20, 7}, 26, true);
  CHECK(step.what == Do::settle);
  CHECK(step.delay == 200ms);
  CHECK(e.settled().what == Do::lead);

  auto late = in_line(200ms);
  REQUIRE(late.viewed(view(25, 20, 20)).what == Do::confirm);
  REQUIRE(late.confirmed(Found{20, 7}, 26, false).what == Do::await_renewal);
  CHECK(late.renewed(true).what == Do::settle);
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
  REQUIRE(e.start(7).what == Do::enter);
  auto step = e.failed(Do::enter, errc::unreachable, "campaign: no connection");
  CHECK(step.what == Do::pause);
  CHECK(step.delay == 500ms);
  CHECK(e.paused().what == Do::enter);
  REQUIRE(e.entered(20, 20).what == Do::wait);
  REQUIRE(e.viewed(view(21, 20, 20)).what == Do::confirm);
  CHECK(e.failed(Do::confirm, errc::timeout, "range").what == Do::pause);
  CHECK(e.paused().what == Do::confirm);
  const auto denied = e.failed(Do::confirm, errc::permission_denied, "range: permission denied");
  CHECK(denied.what == Do::fail);
  CHECK(denied.error == errc::permission_denied);
  CHECK(denied.message == "range: permission denied");
  CHECK(e.failed(Do::wait, errc::auth_failed, "watch").what == Do::fail);
}
