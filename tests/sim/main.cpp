// sim: the election protocol against a simulated etcd, one seed per schedule.
//
//   sim --seeds 10000                 seeds 1..10000; the first failing one is printed with its
//                                     trace, and the exit status is 1
//   sim --seed 4711 --trace           one seed, every event of its schedule
//   sim --mutation no_takeover_delay --seeds 10000 --expect-failure
//                                     passes only if some seed catches the mutation
#include "world.hpp"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

namespace {

std::optional<election::detail::Mutation> active;

const std::map<std::string, election::detail::Mutation>& mutations() {
  using M = election::detail::Mutation;
  static const std::map<std::string, M> all = {
      {"deadline_from_arrival", M::deadline_from_arrival},
      {"no_takeover_delay", M::no_takeover_delay},
      {"no_own_key_check", M::no_own_key_check},
      {"renew_after_resign", M::renew_after_resign},
  };
  return all;
}

void print_failure(const election::sim::Report& r, const election::sim::Options& options,
                   bool full_trace) {
  std::printf("FAILED seed %llu: %s\n  %s\n  world: %s\n", static_cast<unsigned long long>(r.seed),
              r.invariant.c_str(), r.detail.c_str(), r.config.c_str());
  // Deterministic: the same seed again, this time with its trace.
  auto again = options;
  again.seed = r.seed;
  again.trace = true;
  const auto traced = election::sim::run(again);
  const std::size_t shown = full_trace ? traced.trace.size() : 80;
  const auto from = traced.trace.size() > shown ? traced.trace.size() - shown : 0;
  std::printf("  trace (%s%zu of %zu events, seconds from the start):\n", from ? "last " : "",
              traced.trace.size() - from, traced.trace.size());
  for (auto i = from; i < traced.trace.size(); ++i)
    std::printf("    %s\n", traced.trace[i].c_str());
  std::printf("  replay: sim --seed %llu --trace%s%s\n", static_cast<unsigned long long>(r.seed),
              options.mutation ? " --mutation " : "", options.mutation ? "<same>" : "");
}

}  // namespace

bool election::detail::mutated(Mutation m) noexcept { return active && *active == m; }

int main(int argc, char** argv) {
  CLI::App app{"The election protocol against a simulated etcd, one schedule per seed."};
  std::uint64_t seeds = 0;
  std::optional<std::uint64_t> one;
  std::uint64_t first = 1;
  bool trace = false;
  bool expect_failure = false;
  double duration = 60;
  std::string mutation;
  app.add_option("--seeds", seeds, "run this many seeds, from --first on");
  app.add_option("--first", first, "the first seed of --seeds (default 1)");
  app.add_option("--seed", one, "run this one seed");
  app.add_flag("--trace", trace, "print the seed's whole trace (with --seed)");
  app.add_option("--duration", duration, "simulated seconds of faults per seed (default 60)");
  std::string names;
  for (const auto& [name, m] : mutations()) names += (names.empty() ? "" : ", ") + name;
  app.add_option("--mutation", mutation, "break the library on purpose: " + names);
  app.add_flag("--expect-failure", expect_failure,
               "succeed only if some seed fails (a mutation is caught), and say which");
  CLI11_PARSE(app, argc, argv);

  election::sim::Options options;
  options.duration =
      std::chrono::duration_cast<election::sim::Duration>(std::chrono::duration<double>(duration));
  if (!mutation.empty()) {
    auto it = mutations().find(mutation);
    if (it == mutations().end()) {
      std::fprintf(stderr, "sim: no mutation named '%s' (%s)\n", mutation.c_str(), names.c_str());
      return 2;
    }
    active = it->second;
    options.mutation = it->second;
  }
  if (one) {
    first = *one;
    seeds = 1;
  }
  if (seeds == 0) seeds = 100;

  const auto started = std::chrono::steady_clock::now();
  election::sim::Report total;
  std::optional<election::sim::Report> failure;
  std::uint64_t ran = 0;
  for (std::uint64_t s = first; s < first + seeds; ++s) {
    options.seed = s;
    options.trace = one && trace;
    auto r = election::sim::run(options);
    ++ran;
    total.simulated += r.simulated;
    total.events += r.events;
    total.checks += r.checks;
    total.terms += r.terms;
    total.writes_accepted += r.writes_accepted;
    total.writes_refused += r.writes_refused;
    total.uninformed_beliefs += r.uninformed_beliefs;
    total.uninformed_overlaps += r.uninformed_overlaps;
    total.longest_uninformed = std::max(total.longest_uninformed, r.longest_uninformed);
    total.longest_leaderless_calm =
        std::max(total.longest_leaderless_calm, r.longest_leaderless_calm);
    for (const auto& [kind, n] : r.faults) total.faults[kind] += n;
    if (one && trace) {
      for (const auto& line : r.trace) std::printf("%s\n", line.c_str());
      std::printf("world: %s\n", r.config.c_str());
    }
    if (r.failed) {
      failure = std::move(r);
      break;
    }
  }
  const auto wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started);

  std::uint64_t faults = 0;
  std::string kinds;
  for (const auto& [kind, n] : total.faults) {
    faults += n;
    kinds += (kinds.empty() ? "" : ", ") + kind + " " + std::to_string(n);
  }
  const auto simulated = std::chrono::duration<double>(total.simulated).count();
  std::printf("sim: %llu seeds (from %llu)%s%s, %.0f simulated s in %.2f s wall (%.0fx)\n",
              static_cast<unsigned long long>(ran), static_cast<unsigned long long>(first),
              mutation.empty() ? "" : ", mutation ", mutation.c_str(), simulated, wall.count(),
              wall.count() > 0 ? simulated / wall.count() : 0.0);
  std::printf(
      "events: %llu; invariant checks: %llu; terms: %llu; fenced writes accepted %llu, "
      "refused %llu\n",
      static_cast<unsigned long long>(total.events), static_cast<unsigned long long>(total.checks),
      static_cast<unsigned long long>(total.terms),
      static_cast<unsigned long long>(total.writes_accepted),
      static_cast<unsigned long long>(total.writes_refused));
  std::printf("faults: %llu (%s)\n", static_cast<unsigned long long>(faults),
              kinds.empty() ? "none" : kinds.c_str());
  std::printf(
      "beliefs after an unforeseeable removal, before the news arrived: %llu checks, "
      "longest %.1f ms; overlaps they caused past the takeover delay: %llu\n",
      static_cast<unsigned long long>(total.uninformed_beliefs),
      std::chrono::duration<double, std::milli>(total.longest_uninformed).count(),
      static_cast<unsigned long long>(total.uninformed_overlaps));
  std::printf("liveness: longest time to a leader after every fault was healed: %.3f s\n",
              std::chrono::duration<double>(total.longest_leaderless_calm).count());

  if (failure) print_failure(*failure, options, one && trace);
  if (expect_failure) {
    if (failure) {
      std::printf("expected a failure: seed %llu caught it (%s)\n",
                  static_cast<unsigned long long>(failure->seed), failure->invariant.c_str());
      return 0;
    }
    std::printf("expected a failure, but all %llu seeds passed: the checker missed it\n",
                static_cast<unsigned long long>(ran));
    return 1;
  }
  if (failure) return 1;
  std::printf("sim: all %llu seeds passed\n", static_cast<unsigned long long>(ran));
  return 0;
}
