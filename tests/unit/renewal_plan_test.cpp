// The keep-alive's decisions on a scripted clock and scripted answers: slow links, stuck
// streams, late answers, deadlines.
#include "lease/renewal_plan.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <vector>

using election::errc;
using election::detail::LeaseClock;
using election::detail::RenewalPlan;
using namespace std::chrono_literals;
using Kind = RenewalPlan::Action::Kind;
using TimePoint = RenewalPlan::time_point;

namespace {

const TimePoint t0 = TimePoint{} + 1000s;

struct Sent {
  RenewalPlan::StreamId stream;
  std::int64_t lease;
  TimePoint at;
};

// A harness: runs the plan at every wake-up it asks for, records what it does, and lets the
// test decide when (and whether) each renewal is answered.
struct Run {
  RenewalPlan plan{42};
  std::vector<Sent> sends;
  std::vector<RenewalPlan::StreamId> opened, closed;
  std::map<std::int64_t, errc> lost;
  std::vector<std::pair<std::int64_t, TimePoint>> deadlines;  // `deadline` actions, as given
  TimePoint now = t0;

  void step() {
    for (const auto& a : plan.step(now)) apply(a);
  }
  void apply(const RenewalPlan::Action& a) {
    switch (a.kind) {
      case Kind::open_stream:
        opened.push_back(a.stream);
        break;
      case Kind::close_stream:
        closed.push_back(a.stream);
        break;
      case Kind::send:
        sends.push_back({a.stream, a.lease, now});
        break;
      case Kind::lose:
        lost[a.lease] = a.reason;
        break;
      case Kind::deadline:
        deadlines.push_back({a.lease, now});
        break;
    }
  }
  // Moves time on to `until`, stepping at each wake-up the plan asks for.
  void advance_to(TimePoint until) {
    step();  // look now first: a plan asks for its next wake-up only once it has looked
    while (plan.next_wake() <= until && !plan.empty()) {
      now = std::max(now, plan.next_wake());
      step();
    }
    now = until;
    step();
  }
  void answer(const Sent& s, std::chrono::seconds ttl = 3s) {
    if (auto a = plan.on_reply(s.stream, s.lease, ttl, now)) apply(*a);
  }
};

}  // namespace

TEST_CASE("renewals go out every third of the TTL, a little early, and each answer counts",
          "[renewal-plan]") {
  Run run;
  LeaseClock clock(t0, 3s, 300ms);
  bool hold = false;
  run.plan.add(1, &clock, &hold);
  run.step();
  REQUIRE(run.opened.size() == 1);
  CHECK(run.sends.empty());  // first due a period after the grant was sent
  run.advance_to(t0 + 1s);
  REQUIRE(run.sends.size() == 1);
  CHECK(run.sends[0].at == t0 + 750ms);  // a quarter period early (at most 250 ms)
  run.now = run.sends[0].at + 5ms;
  run.answer(run.sends[0]);
  CHECK(clock.deadline() == t0 + 750ms + 3s - 300ms);
}

TEST_CASE("leases due within a window of each other leave in one batch", "[renewal-plan]") {
  Run run;
  // Granted 100 ms apart: due at 1 s and 1.1 s, a quarter period (250 ms) early at the soonest.
  LeaseClock first(t0, 3s, 300ms), second(t0 + 100ms, 3s, 300ms);
  bool hold = false;
  run.plan.add(1, &first, &hold);
  run.plan.add(2, &second, &hold);
  run.advance_to(t0 + 1200ms);
  REQUIRE(run.sends.size() == 2);
  CHECK(run.sends[0].at == t0 + 750ms);
  CHECK(run.sends[1].at == run.sends[0].at);  // one wake-up for both, not one each
  // Answered together, they stay together: the next round is one batch again.
  run.now = t0 + 760ms;
  run.answer(run.sends[0]);
  run.answer(run.sends[1]);
  run.advance_to(t0 + 1600ms);  // next due at 1.75 s (a period after the send), sent at 1.5 s
  REQUIRE(run.sends.size() == 4);
  CHECK(run.sends[2].at == run.sends[3].at);
}

TEST_CASE("a 600 ms round trip keeps a 3 s lease for a minute: late answers still renew",
          "[renewal-plan][slow-link]") {
  Run run;
  LeaseClock clock(t0, 3s, 300ms);
  bool hold = false;
  run.plan.add(1, &clock, &hold);
  run.plan.on_rtt_sample(600ms);  // the grant's round trip
  std::size_t answered = 0;
  while (run.now < t0 + 60s) {
    run.advance_to(run.now + 50ms);
    // etcd answers each renewal 600 ms after it was sent, in order.
    while (answered < run.sends.size() && run.sends[answered].at + 600ms <= run.now) {
      run.answer(run.sends[answered]);
      ++answered;
    }
    REQUIRE(run.lost.empty());
  }
  CHECK(run.opened.size() == 1);  // slow is not stuck: never a second stream
  CHECK(run.plan.counters().hedges == 0);
  CHECK(answered >= 55);
  CHECK(clock.deadline() > run.now);
}

TEST_CASE("a round trip near the period renews once a period, on one stream",
          "[renewal-plan][slow-link]") {
  Run run;
  LeaseClock clock(t0, 3s, 300ms);  // period 1 s
  bool hold = false;
  run.plan.add(1, &clock, &hold);
  run.plan.on_rtt_sample(900ms);
  std::size_t answered = 0;
  while (run.now < t0 + 30s) {
    run.advance_to(run.now + 50ms);
    while (answered < run.sends.size() && run.sends[answered].at + 900ms <= run.now) {
      run.answer(run.sends[answered]);
      ++answered;
    }
    REQUIRE(run.lost.empty());
  }
  CHECK(run.opened.size() == 1);
  CHECK(run.plan.counters().hedges == 0);
  for (std::size_t i = 1; i < run.sends.size(); ++i)
    CHECK(run.sends[i].at - run.sends[i - 1].at >= 1s - 250ms);
}

TEST_CASE("a round trip over the period keeps the lease, with streams opened beside slow ones",
          "[renewal-plan][slow-link]") {
  // 1.5 s round trip, TTL 3 s (period 1 s): past the period a renewal counts as stuck, so a
  // second stream is opened; the late answers on the first still renew.
  Run run;
  LeaseClock clock(t0, 3s, 300ms);
  bool hold = false;
  run.plan.add(1, &clock, &hold);
  run.plan.on_rtt_sample(1500ms);
  std::map<RenewalPlan::StreamId, bool> open;
  std::size_t answered = 0;
  while (run.now < t0 + 30s) {
    run.advance_to(run.now + 50ms);
    for (; answered < run.sends.size() && run.sends[answered].at + 1500ms <= run.now; ++answered) {
      // A stream the plan closed answers nothing more.
      if (std::find(run.closed.begin(), run.closed.end(), run.sends[answered].stream) ==
          run.closed.end())
        run.answer(run.sends[answered]);
    }
    REQUIRE(run.lost.empty());
  }
  CHECK(run.plan.stream_count() <= RenewalPlan::max_streams);
  CHECK(clock.deadline() > run.now);
}

TEST_CASE(
    "a stuck stream gets a second one beside it whose late answers still count and then it goes",
    "[renewal-plan]") {
  Run run;
  LeaseClock a(t0, 5s, 500ms), b(t0, 5s, 500ms);
  bool hold = false;
  run.plan.add(1, &a, &hold);
  run.plan.add(2, &b, &hold);
  run.plan.on_rtt_sample(2ms);
  run.advance_to(t0 + 1500ms);     // due at 1.67 s, sent 250 ms early
  REQUIRE(run.sends.size() == 2);  // one batch on stream 1
  const auto stuck = run.opened.at(0);
  // Stream 1 goes silent (a frozen member). After the patience (500 ms: the floor), a second
  // stream opens and both leases are renewed on it at once.
  run.advance_to(run.sends[0].at + 499ms);
  CHECK(run.opened.size() == 1);
  run.advance_to(run.sends[0].at + 500ms);
  REQUIRE(run.opened.size() == 2);
  const auto fresh = run.opened.at(1);
  REQUIRE(run.sends.size() == 4);
  CHECK(run.sends[2].stream == fresh);
  CHECK(run.sends[3].stream == fresh);
  CHECK(run.plan.counters().hedges == 1);
  CHECK(run.closed.empty());  // the old stream stays: its answers could still help
  // The old stream's answer comes after all (the member thawed): it counts, from its send time.
  run.now += 100ms;
  run.answer(run.sends[0], 5s);
  CHECK(a.deadline() == run.sends[0].at + 5s - 500ms);
  // Then the new stream answers both: the old one can no longer move a deadline, and goes.
  run.answer(run.sends[2], 5s);
  run.answer(run.sends[3], 5s);
  run.step();
  CHECK(run.closed == std::vector<RenewalPlan::StreamId>{stuck});
  CHECK(a.deadline() == run.sends[2].at + 5s - 500ms);
  CHECK(b.deadline() == run.sends[3].at + 5s - 500ms);
}

TEST_CASE("at most three streams: a fourth stuck one closes the oldest", "[renewal-plan]") {
  Run run;
  LeaseClock clock(t0, 10s, 1s);
  bool hold = false;
  run.plan.add(1, &clock, &hold);
  run.plan.on_rtt_sample(2ms);
  // Nothing is ever answered: from the first renewal (3.08 s) on, a new stream every 500 ms.
  run.advance_to(t0 + 6s);
  CHECK(run.plan.stream_count() <= RenewalPlan::max_streams);
  CHECK(run.opened.size() >= 4);
  REQUIRE_FALSE(run.closed.empty());
  CHECK(run.closed.front() == run.opened.front());
  CHECK(run.lost.empty());  // the deadline is at 9 s
}

TEST_CASE("a lease is lost at its deadline, unless held past it while in line", "[renewal-plan]") {
  Run run;
  LeaseClock leader(t0, 3s, 300ms), waiting(t0, 3s, 300ms);
  bool not_held = false, held = true;
  run.plan.add(1, &leader, &not_held);
  run.plan.add(2, &waiting, &held);
  run.advance_to(t0 + 2699ms);  // nothing answered: etcd away
  CHECK(run.lost.empty());
  run.advance_to(t0 + 2700ms);
  REQUIRE(run.lost.count(1));
  CHECK(run.lost[1] == errc::lease_deadline_passed);
  CHECK_FALSE(run.plan.has(1));
  run.advance_to(t0 + 10s);
  CHECK_FALSE(run.lost.count(2));
  CHECK(run.plan.has(2));  // still renewed: etcd's answer decides
}

TEST_CASE("a lease held past its deadline says once per deadline that it passed",
          "[renewal-plan][session]") {
  Run run;
  LeaseClock shared(t0, 3s, 300ms);
  bool held = true;  // a Session's lease: held for good
  run.plan.add(1, &shared, &held);
  run.advance_to(t0 + 2699ms);  // nothing answered: etcd away
  CHECK(run.deadlines.empty());
  run.advance_to(t0 + 2700ms);
  REQUIRE(run.deadlines.size() == 1);
  CHECK(run.deadlines[0].first == 1);
  CHECK(run.deadlines[0].second == t0 + 2700ms);
  run.advance_to(t0 + 8s);
  CHECK(run.deadlines.size() == 1);  // once for that deadline, however long it stays passed
  CHECK(run.lost.empty());
  REQUIRE(run.plan.has(1));
  // etcd is back: an answer moves the deadline on, and its passing is said again.
  REQUIRE_FALSE(run.sends.empty());
  run.answer(run.sends.back());
  REQUIRE(shared.deadline() > run.now);
  const auto next = shared.deadline();
  // No answer to anything sent from here on: the new deadline passes too.
  const auto answered = run.sends.size();
  run.advance_to(next + 1ms);
  CHECK(run.sends.size() > answered);
  REQUIRE(run.deadlines.size() == 2);
  CHECK(run.deadlines[1].second >= next);
  CHECK(run.lost.empty());
}

TEST_CASE("a time 30 s on (a suspended host) loses the lease at the next look",
          "[renewal-plan][suspend]") {
  Run run;
  LeaseClock clock(t0, 10s, 1s);
  bool hold = false;
  run.plan.add(1, &clock, &hold);
  run.advance_to(t0 + 3100ms);  // the first renewal: due at 3.33 s, sent 250 ms early
  REQUIRE(run.sends.size() == 1);
  run.answer(run.sends[0], 10s);
  const auto deadline = clock.deadline();
  // The host sleeps; the injected clock (boot time) runs on. The first look after is enough.
  run.now += 30s;
  run.step();
  CHECK(run.now > deadline);
  REQUIRE(run.lost.count(1));
  CHECK(run.lost[1] == errc::lease_deadline_passed);
}

TEST_CASE("etcd's TTL 0 loses the lease and answers for a removed lease are ignored",
          "[renewal-plan]") {
  Run run;
  LeaseClock a(t0, 3s, 300ms), b(t0, 3s, 300ms);
  bool hold = false;
  run.plan.add(1, &a, &hold);
  run.plan.add(2, &b, &hold);
  run.advance_to(t0 + 1s);
  REQUIRE(run.sends.size() == 2);
  run.answer(run.sends[0], 0s);
  CHECK(run.lost[1] == errc::lease_expired);
  run.plan.remove(2);
  const auto before = b.deadline();
  run.answer(run.sends[1]);
  CHECK(b.deadline() == before);
  CHECK(run.plan.empty());
}

TEST_CASE("a stream that breaks before answering is opened again after a backoff",
          "[renewal-plan]") {
  Run run;
  LeaseClock clock(t0, 10s, 1s);
  bool hold = false;
  run.plan.add(1, &clock, &hold);
  run.step();
  REQUIRE(run.opened.size() == 1);
  run.plan.on_stream_broken(run.opened[0], run.now);
  run.step();
  CHECK(run.opened.size() == 1);  // not at once
  CHECK(run.plan.next_wake() > run.now);
  CHECK(run.plan.next_wake() <= run.now + 50ms);
  run.advance_to(run.now + 60ms);
  CHECK(run.opened.size() == 2);
}

TEST_CASE("a stuck stream whose hedge waits out a backoff sleeps until then, not in a loop",
          "[renewal-plan]") {
  // Found by the simulator (tests/sim, seed 54 before the fix): the primary stuck, its hedge
  // broken before answering, so the next hedge waits for the backoff. The plan asked to be
  // woken at the instant the primary became stuck, already past: the keep-alive spun on the
  // CPU until the backoff ended.
  Run run;
  LeaseClock clock(t0, 3s, 300ms);
  bool hold = false;
  run.plan.add(1, &clock, &hold);
  run.advance_to(t0 + 1s);
  REQUIRE(run.opened.size() == 1);
  REQUIRE(run.sends.size() == 1);
  run.advance_to(run.now + 600ms);  // no answer past the patience: a hedge beside it
  REQUIRE(run.opened.size() == 2);
  run.plan.on_stream_broken(run.opened[1], run.now);  // the hedge breaks unanswered
  run.step();
  CHECK(run.opened.size() == 2);  // the next hedge waits for the backoff
  CHECK(run.plan.next_wake() > run.now);
  CHECK(run.plan.next_wake() <= run.now + 50ms);
  run.now = run.plan.next_wake();
  run.step();
  CHECK(run.opened.size() == 3);
}

TEST_CASE("a round-trip estimate inflated by slow answers never delays the hedge past a period",
          "[renewal-plan]") {
  // Renewals that waited for a raft election (seconds) inflate the estimate; a stream stuck
  // after that must still be hedged in time for a 3 s lease, within its period (1 s).
  Run run;
  LeaseClock clock(t0, 3s, 300ms);
  bool hold = true;  // waiting in line: etcd's expiry, not the deadline, is what counts
  run.plan.add(1, &clock, &hold);
  run.plan.on_rtt_sample(2500ms);
  run.plan.on_rtt_sample(3000ms);
  CHECK(run.plan.patience() > 1s);  // the estimate alone would wait that long
  run.advance_to(t0 + 800ms);
  REQUIRE(run.sends.size() == 1);
  const auto stuck = run.sends[0];
  run.advance_to(stuck.at + 1s);
  CHECK(run.plan.counters().hedges == 1);
  REQUIRE(run.sends.size() == 2);
  CHECK(run.sends[1].at - stuck.at <= 1s);
  CHECK(run.sends[1].stream != stuck.stream);
}
