// Observe fan-out: N Observers of one election in one process, on one Client; the leader
// (another Client) proclaims -> each observer's next() returns the new value.
//
//   ours:  the clock starts before proclaim() and stops, per observer, when its next() returns.
//   floor: one raw watch (raw_watch.hpp's KeyWatch, a stream of its own, on the same gRPC
//          bridge and Client) on one key; a Put -> its event: what etcd and the transport cost
//          one watcher, so the ratio says what telling N observers adds. Rounds alternate.
// Every observer's and watcher's event of every round is one sample.
#include "api/access.hpp"
#include "common.hpp"

#include "raw_watch.hpp"

namespace election::bench {
namespace {

// Events are told apart by value: "<prefix><index>", index 0 the initial state, 1 the warm-up.
int index_of(const std::string& value) { return std::stoi(value.substr(1)); }

struct Fanout {
  int n = 0;
  int floor_n = 1;  // raw watches of the floor
  int rounds = 0;   // measured; events per observer: initial + warm-up + rounds
  std::vector<std::string> endpoints;
  std::optional<Client> obs_client, leader_client;
  std::optional<Participant> leader;
  std::string name, floor_key;
  std::vector<std::unique_ptr<Observer>> observers;
  std::vector<std::unique_ptr<detail::KeyWatch>> watchers;
  std::vector<std::vector<std::int64_t>> ours_at, floor_at;  // [event][observer]
  std::vector<int> ours_count, floor_count;                  // [event]
  std::vector<std::int64_t> ours_sent, floor_sent;           // [event]
  std::exception_ptr failure;
  Samples ours, floor;
  double setup_ms = 0;

  int events() const { return rounds + 2; }

  void check() const {
    if (failure) std::rethrow_exception(failure);
  }

  void on_done(std::exception_ptr e) {
    if (e && !failure) failure = e;
  }

  asio::awaitable<void> observe(int i) {
    for (int k = 0; k < events(); ++k) {
      auto e = co_await observers[i]->next();
      const auto at = now_us();
      if (!e.has_leader()) throw std::runtime_error("observer saw no leader");
      const int idx = index_of(e.leader->value);
      ours_at.at(idx).at(i) = at;
      ++ours_count.at(idx);
    }
  }

  asio::awaitable<void> watch(int i) {
    for (int seen = 1; seen < events();) {
      auto batch = co_await watchers[i]->next();
      const auto at = now_us();
      for (const auto& e : batch.events) {
        const int idx = index_of(e.kv().value());
        floor_at.at(idx).at(i) = at;
        ++floor_count.at(idx);
        ++seen;
      }
    }
  }

  asio::awaitable<void> wait_all(std::vector<int>& count, int idx, int need,
                                 std::chrono::seconds limit, const char* what) {
    co_await require_within([&] { return count[idx] >= need || failure; }, limit, what);
    check();
  }

  asio::awaitable<void> run() {
    auto ex = co_await asio::this_coro::executor;
    ours_at.assign(events(), std::vector<std::int64_t>(n, 0));
    floor_at.assign(events(), std::vector<std::int64_t>(floor_n, 0));
    ours_count.assign(events(), 0);
    floor_count = ours_count;
    ours_sent.assign(events(), 0);
    floor_sent = ours_sent;

    obs_client.emplace(ex, client_options(endpoints));
    leader_client.emplace(ex, client_options(endpoints));
    co_await obs_client->connect();
    name = unique("fanout");
    leader.emplace(*leader_client, name, "e0");
    co_await leader->campaign();

    const auto setup_start = now_us();
    for (int i = 0; i < n; ++i) {
      observers.push_back(std::make_unique<Observer>(*obs_client, name));
      auto loop = [this, i]() -> asio::awaitable<void> { co_await observe(i); };
      auto done = [this](std::exception_ptr e) { on_done(e); };
      asio::co_spawn(ex, loop, done);
    }
    co_await wait_all(ours_count, 0, n, 120s, "every observer's first event");
    setup_ms = ms(now_us() - setup_start);

    floor_key = unique("fanout-floor");
    const auto revision =
        co_await put_key(*election::detail::access::core(*leader_client), floor_key, "f0");
    for (int i = 0; i < floor_n; ++i) {
      watchers.push_back(std::make_unique<detail::KeyWatch>(
          election::detail::access::core(*obs_client), floor_key, std::string{}, revision + 1));
      auto loop = [this, i]() -> asio::awaitable<void> { co_await watch(i); };
      auto done = [this](std::exception_ptr e) { on_done(e); };
      asio::co_spawn(ex, loop, done);
    }

    // Event 1 warms up: every stream is open and every watch created on the server before the
    // measured rounds.
    for (int k = 1; k < events(); ++k) {
      const std::string tag = std::to_string(k);
      ours_sent[k] = now_us();
      co_await leader->proclaim("e" + tag);
      co_await wait_all(ours_count, k, n, k == 1 ? 60s : 20s, "every observer's event");
      co_await sleep_for(50ms);
      floor_sent[k] = now_us();
      co_await put_key(*election::detail::access::core(*leader_client), floor_key, "f" + tag);
      co_await wait_all(floor_count, k, floor_n, k == 1 ? 60s : 20s, "every watcher's event");
      co_await sleep_for(50ms);
    }
    for (int k = 2; k < events(); ++k) {
      for (int i = 0; i < n; ++i) ours.add(ms(ours_at[k][i] - ours_sent[k]));
      for (int i = 0; i < floor_n; ++i) floor.add(ms(floor_at[k][i] - floor_sent[k]));
    }

    // Every loop has ended with its last event.
    observers.clear();
    watchers.clear();
    co_await leader->resign();
    leader.reset();
    obs_client.reset();
    leader_client.reset();
  }
};

}  // namespace

int run_fanout(const Config& config) {
  Etcd etcd(config, "fanout");
  IoThread io;
  Fanout f;
  f.n = config.n > 0 ? config.n : config.quick ? 100 : 10000;
  f.rounds = config.quick ? 3 : 20;
  f.endpoints = etcd.endpoints();
  io.sync(f.run(), config.quick ? 60s : 300s, "fan-out");

  Results results("fanout");
  const std::string n = std::to_string(f.n);
  const std::string floor_name = "floor: one raw watch, put -> event";
  char note[160];
  std::snprintf(note, sizeof note,
                "%d proclaims x %d observers; setting up the %d observers (first event each) took "
                "%.0f ms",
                f.rounds, f.n, f.n, f.setup_ms);
  results.add(Row{"observe fan-out p50 (" + n + " observers)", "ms", f.ours.percentile(50),
                  floor_name, f.floor.percentile(50), "", -1, f.ours.size(), note});
  results.add(Row{"observe fan-out p99 (" + n + " observers)", "ms", f.ours.percentile(99),
                  floor_name, f.floor.percentile(99), "< 50 ms", f.ours.percentile(99) < 50 ? 1 : 0,
                  f.ours.size(), ""});
  results.add(Row{"observe fan-out max (" + n + " observers)", "ms", f.ours.max(), floor_name,
                  f.floor.max(), "", -1, f.ours.size(), ""});
  results.print();
  results.write(config.out);
  return 0;
}

}  // namespace election::bench
