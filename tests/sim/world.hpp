// The simulated world of one seed: a clock and its event queue, etcd members with a raft leader
// around the etcd state machine, links with per-seed latency and faults, the participants, and
// the checker that looks at all of it after every event. Single-threaded; every choice is made
// by one seeded PRNG, so a seed replays exactly.
#pragma once

#include "base/mutation.hpp"
#include "etcd_model.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace election::sim {

using namespace std::chrono_literals;

class Client;
class World;

/// What a run is told: the seed, how much simulated time faults are injected for, whether to
/// keep a trace, which mutation of the library is switched on (mutation.hpp).
struct Options {
  std::uint64_t seed = 1;
  Duration duration = 60s;
  bool trace = false;
  std::optional<detail::Mutation> mutation;
};

/// What one seed did, and the first invariant it broke.
struct Report {
  std::uint64_t seed = 0;
  bool failed = false;
  std::string invariant;  // a short name: two-leaders, leads-past-expiry, ...
  std::string detail;
  Duration simulated{0};
  std::uint64_t events = 0;
  std::uint64_t checks = 0;
  std::map<std::string, std::uint64_t> faults;
  std::uint64_t terms = 0;
  std::uint64_t writes_accepted = 0;
  std::uint64_t writes_refused = 0;
  /// Beliefs that outlived an unsigned removal of the leader's key (an operator's delete or
  /// revoke, etcd's stale revocation) before the news reached the leader: the library cannot
  /// know sooner; longer than the takeover delay, such a belief may overlap a successor.
  std::uint64_t uninformed_beliefs = 0;
  std::uint64_t uninformed_overlaps = 0;
  Duration longest_uninformed{0};
  Duration longest_leaderless_calm{0};  // in the liveness phase, from its start to a leader
  std::string config;                   // the seed's swarm: clients, TTL, faults switched on
  std::vector<std::string> trace;
};

/// Runs one seed to its end or its first broken invariant.
Report run(const Options& options);

/// The simulator's PRNG: splitmix64, small, fast and the same on every platform (the standard
/// distributions are not: only raw draws and the helpers here are used).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n).
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
  /// Uniform in [lo, hi].
  std::int64_t range(std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(hi - lo + 1)));
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return unit() < p; }
  /// Log-uniform in [lo, hi]: short and long lengths alike.
  Duration log_between(Duration lo, Duration hi);

 private:
  std::uint64_t state_;
};

/// One direction of a link: a stream's messages keep their order (TCP), a unary call's do not.
struct Lane {
  Time last{};
};

/// A gRPC stream between a client and a member: the keep-alive's or the watch's.
struct Stream {
  std::uint64_t id = 0;
  int client = 0;
  int member = 0;
  bool open = true;
  Lane up, down;
  Duration extra_delay{0};  // a delay fault on this stream
  Time extra_until{};
  // The watch a member serves on this stream (watch streams only).
  struct Watch {
    std::int64_t id;
    std::string key, end;
    std::int64_t next = 0;
  };
  std::vector<Watch> watches;
};

/// A leadership as its holder believes in it.
struct ClientTerm {
  std::string key;
  std::int64_t create_revision;
  std::int64_t lease;
  Time won_at;
};

/// What a member answers a unary request with.
struct Reply {
  enum class Status { ok, unavailable, lease_not_found } status = Status::ok;
  TxnResult txn;
  std::vector<KeyValue> kvs;
  std::int64_t revision = 0;
  std::int64_t lease = 0;
  std::chrono::seconds ttl{0};
};

class World {
 public:
  explicit World(const Options& options);
  ~World();

  Report run();

  // --- the clock and the events ---------------------------------------------------------
  Time now() const { return now_; }
  /// Runs `f` at `at`; `owner` is the client it runs in (-1: etcd or the world), deferred
  /// while that client is paused.
  void at(Time at, int owner, std::function<void()> f);
  void post(int owner, std::function<void()> f) { at(now_, owner, std::move(f)); }
  bool tracing() const { return options_.trace; }
  void trace(const std::string& who, const std::string& what);
  Rng& rng() { return rng_; }

  // --- links ------------------------------------------------------------------------------
  /// A one-way latency for `client`'s traffic now (per-seed base, jitter, slow-link faults).
  Duration latency(int client);
  /// Sends a unary request from `client`: `apply` runs at a member when it is applied there
  /// (the raft leader needed when `needs_leader`), and its reply comes back to `done`, unless
  /// lost on the way.
  void unary(int client, bool needs_leader, std::function<Reply(Store&)> apply,
             std::function<void(Reply)> done);
  std::uint64_t open_stream(int client);
  /// Sends on a stream; false when the stream is gone (the write is refused).
  bool stream_up(std::uint64_t stream, std::function<void(Stream&)> at_member);
  void stream_down(Stream& s, std::function<void()> at_client);
  void close_stream(std::uint64_t stream);
  Stream* stream(std::uint64_t id);

  // --- etcd ---------------------------------------------------------------------------------
  Store& store() { return store_; }
  int members() const { return 3; }
  /// A keep-alive request on stream `s` (the raft leader needed), answered on the same stream.
  void keep_alive(Stream& s, std::int64_t lease, Time sent);
  void watch_create(Stream& s, std::int64_t id, std::string key, std::string end,
                    std::int64_t start);
  void watch_cancel(Stream& s, std::int64_t id);
  void watch_progress(Stream& s);

  // --- what the checker is told by the clients ---------------------------------------------
  void on_win(Client& c, const std::string& key, std::int64_t create_revision,
              std::int64_t read_revision);
  void on_withdrawn(Client& c, std::int64_t lease);
  /// A write fenced by `key`@`create_revision`, as etcd applied it (succeeded or refused).
  void on_fenced_write(Client& c, const std::string& key, std::int64_t create_revision,
                       const TxnResult& result);
  Client& client(int i) { return *clients_[static_cast<std::size_t>(i)]; }
  std::size_t client_count() const { return clients_.size(); }
  const std::string& election() const { return election_; }
  std::string counter_key() const { return "counter"; }
  std::chrono::milliseconds takeover_delay() const { return takeover_delay_; }
  std::chrono::seconds ttl() const { return ttl_; }
  /// Fails the run with `invariant` (the first one only).
  void fail(const std::string& invariant, const std::string& detail);
  bool failed() const { return report_.failed; }
  Report& report() { return report_; }

 private:
  struct Item {
    Time at;
    std::uint64_t seq;
    int owner;
    std::function<void()> f;
    bool operator>(const Item& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  struct Member {
    bool up = true;
    bool frozen = false;
    std::vector<std::function<void()>> held;  // arrived while frozen, in order
    // What this member's lessor believed when it froze as raft leader: etcd's stale leader
    // revokes what had expired in that view when it wakes (issues #12528, #15247).
    std::map<std::int64_t, Time> stale_expiries;
  };

  void at_member(int member, std::function<void()> f);
  void needing_leader(std::function<void()> f);
  void committed();  // after every change of the store: watches, the checker
  void serve_watches(Stream& s);
  void elect(int not_member);
  void expiry_tick();
  void break_stream(Stream& s);
  void check();
  std::optional<Duration> uninformed(const Client& c, const ClientTerm& t) const;
  void schedule_faults();
  void inject(const std::string& kind);
  void resume(std::size_t client);
  void freeze(int member, Duration d);
  void thaw(int member);
  void restart(Duration d);
  void heal();
  std::optional<KeyValue> first_in_line() const;
  Duration liveness_bound() const;

  Options options_;
  Rng rng_;
  Time now_;
  Time start_;
  Time faults_end_;
  std::uint64_t seq_ = 0;
  std::uint64_t same_instant_ = 0;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_;
  std::vector<std::vector<Item>> deferred_;  // per client, while paused
  std::vector<Time> paused_until_;
  Store store_;
  std::vector<Member> members_;
  int leader_ = 0;  // the raft leader, -1 while there is none
  std::uint64_t leader_term_ = 1;
  std::vector<std::function<void()>> waiting_for_leader_;
  std::vector<std::unique_ptr<std::function<void()>>> fault_timers_;
  std::set<std::int64_t> stale_revoke_;  // leases to revoke right after their next renewal
  std::int64_t served_revision_ = 0;
  std::set<std::pair<std::int64_t, std::int64_t>> overlaps_seen_;
  std::map<std::uint64_t, Stream> streams_;
  std::uint64_t last_stream_ = 0;
  std::vector<std::unique_ptr<Client>> clients_;
  std::string election_ = "e";
  std::chrono::seconds ttl_{3};
  std::chrono::milliseconds takeover_delay_{200};
  bool stale_bug_ = true;  // etcd before 3.4.31 / 3.5.13
  // Per-seed world: latencies and which faults are switched on, how often.
  Duration base_latency_{1ms};
  double drop_rate_ = 0;
  std::map<std::string, double> fault_rates_;  // faults per simulated minute
  std::vector<Duration> slow_until_;           // per client: a slow link until then
  std::vector<Time> slow_end_;
  bool calm_ = false;  // the liveness phase: no faults, everything healed
  Time calm_since_{};
  std::optional<Time> calm_led_;
  Report report_;
};

}  // namespace election::sim
