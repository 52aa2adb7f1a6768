// The examples run as a user runs them: separate processes against the fixture's etcd.
#include "support/etcd_cluster.hpp"
#include "support/process.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

std::filesystem::path out_file(const std::string& name) {
  const auto dir = std::filesystem::path(ELECTION_TEST_WORK_DIR);
  std::filesystem::create_directories(dir);
  return dir / (name + "-" + std::to_string(::getpid()) + ".out");
}

bool wait_for_text(const election::test::ChildProcess& p, const std::string& text,
                   std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (p.output().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// Keys under `prefix` in the fixture's etcd, as etcdctl lists them.
long keys_under(const std::string& prefix) {
  const auto command =
      "ETCDCTL_API=3 etcdctl --endpoints=" + election::test::fixture_endpoints().front() +
      " get --prefix " + prefix + " --keys-only 2>/dev/null";
  std::FILE* out = ::popen(command.c_str(), "r");
  if (!out) return -1;
  char line[512];
  long count = 0;
  while (std::fgets(line, sizeof line, out))
    if (line[0] != '\n') ++count;
  return ::pclose(out) == 0 ? count : -1;
}

std::string text_of(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

TEST_CASE("the README's first example is examples/quickstart.cpp, verbatim", "[example]") {
  const auto readme = text_of(ELECTION_SOURCE_DIR "/README.md");
  const auto section = readme.find("## The API in short");
  REQUIRE(section != std::string::npos);
  const auto open = readme.find("```cpp\n", section);
  REQUIRE(open != std::string::npos);
  const auto begin = open + 7;
  const auto end = readme.find("```", begin);
  REQUIRE(end != std::string::npos);
  CHECK(readme.substr(begin, end - begin) ==
        text_of(ELECTION_SOURCE_DIR "/examples/quickstart.cpp"));
}

TEST_CASE("the README's loop underneath is examples/manual_loop.cpp, verbatim", "[example]") {
  const auto readme = text_of(ELECTION_SOURCE_DIR "/README.md");
  const auto block = "```cpp\n" + text_of(ELECTION_SOURCE_DIR "/examples/manual_loop.cpp") + "```";
  CHECK(readme.find(block) != std::string::npos);
}

TEST_CASE("the README's lock example is examples/lock.cpp, verbatim", "[example]") {
  const auto readme = text_of(ELECTION_SOURCE_DIR "/README.md");
  const auto block = "```cpp\n" + text_of(ELECTION_SOURCE_DIR "/examples/lock.cpp") + "```";
  CHECK(readme.find(block) != std::string::npos);
}

TEST_CASE("the README's shards example is examples/shards.cpp, verbatim", "[example]") {
  const auto readme = text_of(ELECTION_SOURCE_DIR "/README.md");
  const auto block = "```cpp\n" + text_of(ELECTION_SOURCE_DIR "/examples/shards.cpp") + "```";
  CHECK(readme.find(block) != std::string::npos);
}

namespace {

// Both lead, work, and on SIGTERM leave the line at once: the key is gone, not left for its TTL.
void leads_works_and_withdraws(const char* program, const std::string& name) {
  election::test::ChildProcess p({program, election::test::fixture_endpoints().front()},
                                 out_file(name));
  INFO(p.output());
  REQUIRE(wait_for_text(p, "leading with jobs/scheduler/", 10s));
  REQUIRE(wait_for_text(p, "wrote 1 at revision", 5s));
  CHECK(keys_under("jobs/scheduler/") == 1);
  p.signal(SIGTERM);
  REQUIRE(p.wait_for(5s));
  CHECK(p.wait() == 0);
  CHECK(keys_under("jobs/scheduler/") == 0);
}

}  // namespace

TEST_CASE("quickstart leads, works, and on SIGTERM resigns at once", "[example]") {
  leads_works_and_withdraws(ELECTION_QUICKSTART, "quickstart");
}

TEST_CASE("manual_loop leads, works, and on SIGTERM withdraws at once", "[example]") {
  leads_works_and_withdraws(ELECTION_MANUAL_LOOP, "manual-loop");
}

TEST_CASE("callbacks leads from a plain thread, writes, is refused, and resigns", "[example]") {
  election::test::ChildProcess callbacks(
      {ELECTION_CALLBACKS, election::test::fixture_endpoints().front()}, out_file("callbacks"));
  REQUIRE(callbacks.wait_for(20s));
  const auto output = callbacks.output();
  INFO(output);
  CHECK(callbacks.wait() == 0);
  CHECK_THAT(output, Catch::Contains("leading with jobs/callbacks/"));
  CHECK_THAT(output, Catch::Contains("wrote 2 at revision"));
  CHECK_THAT(output, Catch::Contains("refused: put_if_leader: key 'jobs/callbacks/oops'"));
  CHECK_THAT(output,
             Catch::Contains("leadership ended: Leadership was given up through resign()."));
  CHECK_THAT(output, Catch::Contains("resigned"));
  CHECK(keys_under("jobs/callbacks/") == 0);
}

TEST_CASE("shards leads eight elections on one lease and on SIGTERM leaves them all", "[example]") {
  election::test::ChildProcess p({ELECTION_SHARDS, election::test::fixture_endpoints().front()},
                                 out_file("shards"));
  const auto leading = [&] {
    const auto out = p.output();
    int n = 0;
    for (auto at = out.find("leading jobs/shard-"); at != std::string::npos;
         at = out.find("leading jobs/shard-", at + 1))
      ++n;
    return n;
  };
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (leading() < 8 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(20ms);
  const auto output = p.output();
  INFO(output);
  REQUIRE(leading() == 8);
  // One lease for all eight: every line names the same one.
  const auto first = output.find(" with lease ");
  REQUIRE(first != std::string::npos);
  const auto lease = output.substr(first, output.find('\n', first) - first);
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("leading ", 0) == 0) CHECK(line.substr(line.find(" with lease ")) == lease);
  for (int shard = 0; shard < 8; ++shard)
    CHECK(keys_under("jobs/shard-" + std::to_string(shard) + "/") == 1);
  p.signal(SIGTERM);
  REQUIRE(p.wait_for(5s));
  CHECK(p.wait() == 0);
  for (int shard = 0; shard < 8; ++shard)
    CHECK(keys_under("jobs/shard-" + std::to_string(shard) + "/") == 0);
}

TEST_CASE("lock takes the lock, runs its fenced job, and unlocks", "[example]") {
  election::test::ChildProcess p({ELECTION_LOCK, election::test::fixture_endpoints().front()},
                                 out_file("lock"));
  REQUIRE(p.wait_for(20s));
  const auto output = p.output();
  INFO(output);
  CHECK(p.wait() == 0);
  CHECK_THAT(output, Catch::Contains("locked jobs/nightly-report/"));
  CHECK_THAT(output, Catch::Contains("step 3 written at revision"));
  CHECK_THAT(output, Catch::Contains("unlocked"));
  CHECK_THAT(output, !Catch::Contains("held by another"));
  CHECK(keys_under("jobs/nightly-report/") == 0);
}

TEST_CASE("lock queued behind etcdctl lock waits, then runs once etcdctl lets go", "[example]") {
  const auto endpoint = election::test::fixture_endpoints().front();
  election::test::ChildProcess ctl(
      {"etcdctl", "--endpoints=" + endpoint, "lock", "jobs/nightly-report"},
      out_file("lock-etcdctl"), {"ETCDCTL_API=3"});
  REQUIRE(wait_for_text(ctl, "jobs/nightly-report/", 5s));
  election::test::ChildProcess p({ELECTION_LOCK, endpoint}, out_file("lock-queued"));
  INFO(p.output());
  REQUIRE(wait_for_text(p, "held by another: waiting in line", 10s));
  std::this_thread::sleep_for(500ms);
  CHECK(p.output().find("locked") == std::string::npos);
  ctl.signal(SIGINT);
  REQUIRE(p.wait_for(20s));
  const auto output = p.output();
  INFO(output);
  CHECK(p.wait() == 0);
  CHECK_THAT(output, Catch::Contains("step 3 written at revision"));
  CHECK(keys_under("jobs/nightly-report/") == 0);
  ctl.wait();
}
