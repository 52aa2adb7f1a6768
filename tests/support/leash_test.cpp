// The fixture's etcd dies with the test program that started it (issue 12, point 11): checked
// with a program that aborts (fixture-abort-probe), with a normal EtcdCluster lifetime, and on
// etcd-leash itself. Run with ETCD_FIXTURE_LEASH= (empty) to see the first one fail without it.
#include "support/etcd_cluster.hpp"
#include "support/process.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef ELECTION_FIXTURE_ABORT_PROBE
#error "ELECTION_FIXTURE_ABORT_PROBE must name the fixture-abort-probe program"
#endif

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using election::test::ChildProcess;
using election::test::EtcdCluster;
namespace detail = election::test::detail;

namespace {

// The fields of /proc/PID/stat after "(comm)", which may itself hold blanks and parentheses:
// [0] is the state letter, [1] the parent's pid. Empty if there is no such process.
std::vector<std::string> stat_fields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return {};
  const auto close = text.rfind(')');
  if (close == std::string::npos) return {};
  std::vector<std::string> fields;
  std::istringstream rest(text.substr(close + 1));
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// Alive means listed and not a zombie (a zombie has let go of its ports and files).
bool alive(pid_t pid) {
  const auto f = stat_fields(pid);
  return !f.empty() && f[0] != "Z";
}

pid_t parent_of(pid_t pid) {
  const auto f = stat_fields(pid);
  return f.size() > 1 ? static_cast<pid_t>(std::stol(f[1])) : 0;
}

std::vector<std::string> cmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::vector<std::string> argv;
  for (std::string a; std::getline(in, a, '\0');) argv.push_back(a);
  return argv;
}

std::string program_name(pid_t pid) {
  const auto argv = cmdline(pid);
  return argv.empty() ? std::string() : fs::path(argv[0]).filename().string();
}

// As cmake/etcd-fixture.sh's is_our_etcd: a live `NAME` one of whose arguments is ARG. A pid
// that is now some other process (reused) is not ours.
bool is_ours(pid_t pid, const std::string& name, const std::string& arg) {
  if (!alive(pid) || program_name(pid) != name) return false;
  for (const auto& a : cmdline(pid))
    if (a == arg) return true;
  return false;
}

bool gone_within(pid_t pid, const std::string& name, const std::string& arg,
                 std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (is_ours(pid, name, arg)) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Live etcd-leash processes with an argument inside DIR (their pid file): read from /proc, for
// the check that no watcher outlives its etcd.
std::vector<pid_t> leashes_in(const fs::path& dir) {
  std::vector<pid_t> found;
  const std::string prefix = dir.string() + "/";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    if (!alive(pid) || program_name(pid) != "etcd-leash") continue;
    for (const auto& a : cmdline(pid))
      if (a.rfind(prefix, 0) == 0) {
        found.push_back(pid);
        break;
      }
  }
  return found;
}

bool no_leash_within(const fs::path& dir, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!leashes_in(dir).empty()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

fs::path work_dir(const std::string& name) {
  const auto dir = fs::path(ELECTION_TEST_WORK_DIR) / (name + "-" + std::to_string(::getpid()));
  fs::create_directories(dir.parent_path());
  return dir;
}

// Whatever a failed check left running is stopped by pid, through the script, as usual.
struct StopAtEnd {
  fs::path dir;
  ~StopAtEnd() {
    try {
      detail::run_script({"stop", dir.string()});
    } catch (...) {
    }
  }
};

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

// A child that only waits to be killed: an owner to take away. Killed (by pid) and reaped at
// the end of the scope at the latest.
class Owner {
 public:
  Owner() : pid_(::fork()) {
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      for (;;) ::pause();
    }
  }
  Owner(const Owner&) = delete;
  Owner& operator=(const Owner&) = delete;
  ~Owner() { kill(); }
  pid_t pid() const { return pid_; }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    reap(pid_);
    pid_ = 0;
  }

 private:
  pid_t pid_;
};

}  // namespace

TEST_CASE("an aborting test program leaves none of its etcd servers running") {
  const auto dir = work_dir("leash-abort");
  const auto pids_file = fs::path(dir.string() + ".pids");
  fs::remove(pids_file);
  StopAtEnd stop{dir};
  INFO("leash: '" << detail::leash_path() << "' (ETCD_FIXTURE_LEASH or the build's)");

  ChildProcess probe({ELECTION_FIXTURE_ABORT_PROBE, dir.string(), "2", pids_file.string()},
                     dir.string() + ".out");
  REQUIRE(probe.wait_for(120s));
  INFO("probe output: " << read_text(dir.string() + ".out.err"));
  REQUIRE(probe.wait() == 128 + SIGABRT);  // it died by abort, after writing the pids

  std::vector<pid_t> pids;
  {
    std::ifstream in(pids_file);
    for (pid_t pid; in >> pid;) pids.push_back(pid);
  }
  REQUIRE(pids.size() == 2);
  const auto abs = fs::canonical(dir);  // as the script names the data dirs in etcd's argv
  for (std::size_t i = 0; i < pids.size(); ++i) {
    std::string member = "m";  // not "m" + std::string: g++ 12 -Wrestrict false positive
    member += std::to_string(i + 1);
    const auto data = (abs / (member + ".data")).string();
    INFO("member " << i + 1 << ", pid " << pids[i] << ", " << data);
    CHECK(gone_within(pids[i], "etcd", data, 2000ms));
  }
  CHECK(no_leash_within(abs, 2000ms));
}

TEST_CASE("an EtcdCluster's etcd is stopped, killed and restarted by its own pid, as before") {
  const auto dir = work_dir("leash-lifetime");
  StopAtEnd stop{dir};
  pid_t pid = 0;
  std::string data;
  {
    auto etcd = EtcdCluster::start(dir, 1);
    data = (fs::canonical(dir) / "m1.data").string();
    pid = etcd.pid(0);
    REQUIRE(is_ours(pid, "etcd", data));  // the pid file holds etcd's pid, not the leash's
    if (!detail::leash_path().empty()) {
      const pid_t leash = parent_of(pid);
      CHECK(program_name(leash) == "etcd-leash");
      CHECK(leash != ::getpid());
    }

    etcd.freeze(0);
    bool stopped = false;
    for (int i = 0; i < 100 && !stopped; ++i, std::this_thread::sleep_for(10ms))
      stopped = stat_fields(pid).at(0) == "T";
    etcd.thaw(0);
    CHECK(stopped);

    etcd.kill_member(0);
    CHECK_FALSE(is_ours(pid, "etcd", data));  // kill-member waits until it is gone
    etcd.start_member(0);
    const pid_t restarted = etcd.pid(0);
    CHECK(restarted != pid);
    CHECK(is_ours(restarted, "etcd", data));
    pid = restarted;
  }
  CHECK_FALSE(is_ours(pid, "etcd", data));  // the destructor's stop waits for it
  CHECK(no_leash_within(fs::canonical(dir), 2000ms));
}

TEST_CASE("etcd-leash: its command dies with the owner or the leash, and needs a live owner") {
  const auto dir = work_dir("leash-direct");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto pid_file = dir / "cmd.pid";
  // Names our `sleep` in its argv (sleep adds up its arguments: 1000 s and a bit).
  const std::string mark = "0." + std::to_string(::getpid());
  auto leash = [&](pid_t owner) {
    ChildProcess run({ELECTION_ETCD_LEASH, "--owner", std::to_string(owner), "--pid-file",
                      pid_file.string(), "--", "sleep", "1000", mark},
                     dir / "leash.out");
    return run.wait();
  };

  SECTION("the owner is SIGKILLed") {
    Owner owner;
    REQUIRE(leash(owner.pid()) == 0);
    const pid_t cmd = detail::read_pid(pid_file);
    REQUIRE(is_ours(cmd, "sleep", mark));
    CHECK(program_name(parent_of(cmd)) == "etcd-leash");
    owner.kill();
    CHECK(gone_within(cmd, "sleep", mark, 1000ms));
    CHECK(no_leash_within(dir, 1000ms));
  }

  SECTION("the leash itself is SIGKILLed") {
    Owner owner;
    REQUIRE(leash(owner.pid()) == 0);
    const pid_t cmd = detail::read_pid(pid_file);
    REQUIRE(is_ours(cmd, "sleep", mark));
    const pid_t watcher = parent_of(cmd);
    REQUIRE(program_name(watcher) == "etcd-leash");
    ::kill(watcher, SIGKILL);
    CHECK(gone_within(cmd, "sleep", mark, 1000ms));  // PR_SET_PDEATHSIG
  }

  SECTION("the owner has exited already") {
    const pid_t owner = ::fork();
    REQUIRE(owner >= 0);
    if (owner == 0) ::_exit(0);
    while (stat_fields(owner).at(0) != "Z") std::this_thread::sleep_for(1ms);
    CHECK(leash(owner) == 1);  // a zombie owner: nothing started
    reap(owner);
    CHECK(leash(owner) == 1);  // a reaped one
    CHECK_FALSE(fs::exists(pid_file));
    CHECK(leashes_in(dir).empty());
  }

  SECTION("the command cannot be executed") {
    ChildProcess run({ELECTION_ETCD_LEASH, "--owner", std::to_string(::getpid()), "--pid-file",
                      pid_file.string(), "--", (dir / "no-such-program").string()},
                     dir / "leash.out");
    CHECK(run.wait() == 127);
    CHECK_FALSE(fs::exists(pid_file));
  }
}
