// TLS, mutual TLS and etcd authentication, against private etcd servers that
// cmake/etcd-security.sh starts on 127.0.0.1 (certificates made with openssl at test time).
#include "api/access.hpp"
#include "election/election.hpp"
#include "support/etcd_cluster.hpp"
#include "support/process.hpp"
#include "support/run.hpp"
#include "transport/client_core.hpp"
#include "transport/kv.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#ifndef ELECTION_ETCD_SECURITY_SCRIPT
#error "ELECTION_ETCD_SECURITY_SCRIPT must name cmake/etcd-security.sh"
#endif

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using boost::system::system_error;
using election::errc;
using election::Participant;
using election::test::run;
using election::test::sleep_for;
using election::test::wait_until;
using Clock = std::chrono::steady_clock;

namespace {

// Test passwords: throwaway users of a private etcd. The tests check they never show up.
constexpr const char* password = "elect-s3cret-pw";
constexpr const char* root_password = "r00t-s3cret-pw";
constexpr const char* prefix = "secure/";

std::string shell_output(const std::string& command) {
  std::FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
  const int status = ::pclose(pipe);
  if (status != 0) throw std::runtime_error("`" + command + "` failed:\n" + out);
  return out;
}

/// A one-member etcd in tls, mtls or auth mode, stopped (by pid, through the script) at the end.
class SecureEtcd {
 public:
  SecureEtcd(const std::string& mode, const std::string& etcd_flags = "") {
    dir_ = std::filesystem::path(ELECTION_TEST_WORK_DIR) /
           ("security-" + mode + "-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_.parent_path());
    endpoint_ = election::test::detail::trim(
        shell_output(env() + " bash " ELECTION_ETCD_SECURITY_SCRIPT " start " + dir_.string() +
                     " " + mode + " " + etcd_flags));
  }
  SecureEtcd(const SecureEtcd&) = delete;
  SecureEtcd& operator=(const SecureEtcd&) = delete;
  ~SecureEtcd() {
    try {
      shell_output("bash " ELECTION_ETCD_SECURITY_SCRIPT " stop " + dir_.string());
    } catch (...) {
    }
  }

  std::string endpoint() const { return endpoint_; }  // host:port
  std::string https() const { return "https://" + endpoint_; }
  std::string cert(const std::string& name) const { return (dir_ / "certs" / name).string(); }

  /// etcdctl as root, with the TLS flags this etcd needs.
  void ctl(const std::string& args) const {
    shell_output(env() + " bash " ELECTION_ETCD_SECURITY_SCRIPT " ctl " + dir_.string() + " " +
                 args);
  }

  /// Stops etcd (SIGKILL), and `down` later starts it again, with its data; waits until it is
  /// healthy. On a thread of its own, so the caller's event loop runs on meanwhile.
  std::future<void> bounce(std::chrono::milliseconds down) const {
    const auto command = env() + " bash " ELECTION_ETCD_SECURITY_SCRIPT " bounce " + dir_.string() +
                         " " + std::to_string(down.count() / 1000.0);
    return std::async(std::launch::async, [command] { shell_output(command); });
  }

 private:
  // The leash and this program as the etcd's owner: popen's sh, then the script, stand between.
  static std::string env() {
    return election::test::detail::leash_shell_assignments() +
           " ETCD_SECURITY_PASSWORD=" + password + " ETCD_SECURITY_ROOT_PASSWORD=" + root_password +
           " ETCD_SECURITY_PREFIX=" + prefix;
  }

  std::filesystem::path dir_;
  std::string endpoint_;
};

election::ClientOptions tls_options(const SecureEtcd& etcd, bool client_cert) {
  election::ClientOptions options;
  options.endpoints = {etcd.https()};
  options.tls.ca_file = etcd.cert("ca.pem");
  if (client_cert) {
    options.tls.cert_file = etcd.cert("client.pem");
    options.tls.key_file = etcd.cert("client-key.pem");
  }
  return options;
}

election::ClientOptions auth_options(const SecureEtcd& etcd, std::string user = "elect",
                                     std::string pw = password) {
  election::ClientOptions options;
  options.endpoints = {etcd.endpoint()};
  options.user = std::move(user);
  options.password = std::move(pw);
  return options;
}

std::string unique(const std::string& what) {
  static int counter = 0;
  return std::string(prefix) + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++);
}

struct Failure {
  error_code code;
  std::string message;
  Clock::duration took{};
};

template <class F>
asio::awaitable<Failure> failure_of(F f) {
  const auto start = Clock::now();
  Failure out;
  try {
    co_await f();
  } catch (const system_error& e) {
    out.code = e.code();
    out.message = e.what();
  }
  out.took = Clock::now() - start;
  co_return out;
}

Failure constructor_failure(const election::ClientOptions& options) {
  asio::io_context context;
  Failure out;
  try {
    election::Client client(context.get_executor(), options);
  } catch (const system_error& e) {
    out.code = e.code();
    out.message = e.what();
  }
  return out;
}

// The election, done right, through whatever security `options` bring: campaign and resign,
// a waiting candidate keeping its place past its TTL, observe, a fenced write, and leadership
// ending when the lease is revoked behind the leader's back.
void election_scenario(const SecureEtcd& etcd, const election::ClientOptions& options) {
  run(
      [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        election::Client client(executor, options);
        const auto name = unique("election");
        const auto fenced = unique("state");
        Participant a(client, name, "a", {.ttl = 2s});
        Participant b(client, name, "b", {.ttl = 2s});
        election::Observer observer(client, name);

        auto a_key = co_await a.campaign();
        CHECK(a.is_leader());
        auto first = co_await observer.next();
        REQUIRE(first.has_leader());
        CHECK(first.leader->value == "a");
        auto fence = co_await a.put_if_leader(fenced, "from-a");
        CHECK(fence > 0);

        std::optional<election::LeaderKey> b_key;
        auto b_campaign = [&]() -> asio::awaitable<void> { b_key = co_await b.campaign(); };
        asio::co_spawn(executor, b_campaign(), asio::detached);
        const bool b_queued = co_await wait_until([&] { return b.lease_id().has_value(); }, 5s);
        REQUIRE(b_queued);
        co_await sleep_for(3s);  // past b's TTL: only its keep-alive holds its place
        CHECK_FALSE(b_key);
        auto state =
            co_await election::detail::range(*election::detail::access::core(client), name + "/",
                                             election::detail::prefix_end(name + "/"));
        CHECK(state.kvs_size() == 2);
        CHECK(a.is_leader());

        co_await a.resign();
        const bool b_won = co_await wait_until([&] { return b_key.has_value(); }, 5s);
        REQUIRE(b_won);
        CHECK(b_key->key == name + "/" + election::lease_hex(*b.lease_id()));
        auto second = co_await observer.next();
        REQUIRE(second.has_leader());
        CHECK(second.leader->value == "b");
        auto late = co_await failure_of([&] { return a.put_if_leader(fenced, "late"); });
        CHECK(late.code == errc::not_leader);
        auto b_fence = co_await b.put_if_leader(fenced, "from-b");
        CHECK(b_fence > fence);

        etcd.ctl("lease revoke " + election::lease_hex(*b.lease_id()));
        auto reason = co_await b.keep_alive();
        CHECK((reason == errc::lease_expired || reason == errc::key_deleted));
        CHECK_FALSE(b.is_leader());
        (void)a_key;
      },
      40s);
}

}  // namespace

TEST_CASE("the election works over TLS", "[security][tls]") {
  SecureEtcd etcd("tls");
  election_scenario(etcd, tls_options(etcd, false));
}

TEST_CASE("the election works over mutual TLS", "[security][mtls]") {
  SecureEtcd etcd("mtls");
  election_scenario(etcd, tls_options(etcd, true));
}

TEST_CASE("the election works with etcd authentication", "[security][auth]") {
  SecureEtcd etcd("auth");
  election_scenario(etcd, auth_options(etcd));
}

TEST_CASE("TLS files that cannot be read are named", "[security][tls]") {
  election::ClientOptions options;
  options.endpoints = {"https://127.0.0.1:2379"};
  options.tls.ca_file = "/nonexistent/ca.pem";
  auto missing = constructor_failure(options);
  CHECK(missing.code == errc::invalid_argument);
  CHECK_THAT(missing.message, Catch::Contains("/nonexistent/ca.pem"));
  CHECK_THAT(missing.message, Catch::Contains("tls.ca_file"));

  options.tls.ca_file.clear();
  options.tls.cert_file = "/nonexistent/client.pem";
  auto alone = constructor_failure(options);
  CHECK(alone.code == errc::invalid_argument);  // a certificate without its key
  options.tls.key_file = "/nonexistent/client-key.pem";
  auto cert = constructor_failure(options);
  CHECK(cert.code == errc::invalid_argument);
  CHECK_THAT(cert.message, Catch::Contains("/nonexistent/client.pem"));

  options.tls = {};
  options.tls.ca_file = "/etc/hostname";  // readable, but not PEM
  auto not_pem = constructor_failure(options);
  CHECK(not_pem.code == errc::invalid_argument);
  CHECK_THAT(not_pem.message, Catch::Contains("not a PEM file"));

  options.endpoints = {"http://127.0.0.1:2379"};  // plaintext, yet TLS options
  options.tls.ca_file = "/etc/hostname";
  CHECK(constructor_failure(options).code == errc::invalid_endpoint);
}

TEST_CASE("TLS mistakes fail with a clear error within the connect timeout", "[security][tls]") {
  SecureEtcd etcd("mtls");
  run([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    auto connect_with = [&](election::ClientOptions options) -> asio::awaitable<Failure> {
      options.connect_timeout = 2s;
      election::Client client(executor, options);
      co_return co_await failure_of([&] { return client.connect(); });
    };

    election::ClientOptions plain;
    plain.endpoints = {etcd.endpoint()};
    auto plaintext = co_await connect_with(plain);
    INFO(plaintext.message);
    CHECK((plaintext.code == errc::unreachable || plaintext.code == errc::tls_failed));
    CHECK_THAT(plaintext.message, Catch::Contains("https://"));  // the hint
    CHECK(plaintext.took < 3s);

    auto wrong_ca_options = tls_options(etcd, true);
    wrong_ca_options.tls.ca_file = etcd.cert("other-ca.pem");
    auto wrong_ca = co_await connect_with(wrong_ca_options);
    INFO(wrong_ca.message);
    CHECK(wrong_ca.code == errc::tls_failed);
    CHECK(wrong_ca.took < 3s);

    auto no_cert = co_await connect_with(tls_options(etcd, false));
    INFO(no_cert.message);
    CHECK(no_cert.code == errc::tls_failed);
    CHECK(no_cert.took < 3s);

    // A certificate for another name: refused, unless the expected name is given.
    auto wrong_name_options = tls_options(etcd, true);
    wrong_name_options.tls.server_name = "etcd.example";
    auto wrong_name = co_await connect_with(wrong_name_options);
    INFO(wrong_name.message);
    CHECK(wrong_name.code == errc::tls_failed);

    auto good = co_await connect_with(tls_options(etcd, true));
    CHECK(good.code == error_code{});
  });
}

TEST_CASE("bad credentials fail with a clear error and never show the password",
          "[security][auth]") {
  SecureEtcd etcd("auth");
  run([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    std::vector<std::string> messages;

    {
      election::Client client(executor, auth_options(etcd, "elect", "wrong-s3cret-guess"));
      auto wrong = co_await failure_of([&] { return client.connect(); });
      INFO(wrong.message);
      CHECK(wrong.code == errc::auth_failed);
      CHECK_THAT(wrong.message, Catch::Contains("elect"));
      CHECK_THAT(wrong.message, !Catch::Contains("wrong-s3cret-guess"));
      CHECK(wrong.took < 5s);
      messages.push_back(wrong.message);
    }
    {
      election::Client client(executor, auth_options(etcd, "nobody"));
      Participant p(client, unique("denied"), "p", {.ttl = 2s});
      auto denied = co_await failure_of([&] { return p.campaign(); });
      INFO(denied.message);
      CHECK(denied.code == errc::permission_denied);
      messages.push_back(denied.message);
    }
    {
      election::ClientOptions anonymous;
      anonymous.endpoints = {etcd.endpoint()};
      election::Client client(executor, anonymous);
      Participant p(client, unique("anonymous"), "p", {.ttl = 2s});
      auto refused = co_await failure_of([&] { return p.campaign(); });
      INFO(refused.message);
      CHECK(refused.code == errc::auth_failed);
      CHECK_THAT(refused.message, Catch::Contains("ClientOptions::user"));
    }
    {
      // Credentials that worked, then stop working: the user is deleted while leading.
      election::Client client(executor, auth_options(etcd));
      const auto name = unique("deleted");
      Participant p(client, name, "p", {.ttl = 2s});
      co_await p.campaign();
      etcd.ctl("user delete elect");
      auto gone = co_await failure_of([&] { return p.put_if_leader(name + "-state", "x"); });
      INFO(gone.message);
      CHECK(gone.code == errc::auth_failed);
      messages.push_back(gone.message);
    }
    for (const auto& m : messages) {
      CHECK_THAT(m, !Catch::Contains(password));
      CHECK_THAT(m, !Catch::Contains(root_password));
    }
  });
}

TEST_CASE("an expiring token is renewed mid-campaign and mid-leadership and mid-observe",
          "[security][auth]") {
  // Simple tokens live 2 s after their last use here; every wait below is longer.
  SecureEtcd etcd("auth", "--auth-token-ttl 2");
  run(
      [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        election::Client client(executor, auth_options(etcd));
        election::Client watcher_client(executor, auth_options(etcd));
        const auto name = unique("renew");
        Participant a(client, name, "a", {.ttl = 2s});
        Participant b(client, name, "b", {.ttl = 2s});
        election::Observer observer(watcher_client, name);

        co_await a.campaign();
        auto first = co_await observer.next();
        REQUIRE(first.has_leader());

        std::optional<election::LeaderKey> b_key;
        auto b_campaign = [&]() -> asio::awaitable<void> { b_key = co_await b.campaign(); };
        asio::co_spawn(executor, b_campaign(), asio::detached);
        const bool b_queued = co_await wait_until([&] { return b.lease_id().has_value(); }, 5s);
        REQUIRE(b_queued);
        co_await sleep_for(500ms);
        auto queued =
            co_await election::detail::range(*election::detail::access::core(client),
                                             election::detail::candidate_key(name, *b.lease_id()));
        REQUIRE(queued.kvs_size() == 1);
        const auto b_place = queued.kvs(0).create_revision();

        co_await sleep_for(5s);  // both clients' tokens expire
        CHECK(a.is_leader());
        auto fence = co_await a.put_if_leader(name + "-state", "a");  // a new token, by itself
        CHECK(fence > 0);

        co_await sleep_for(3s);
        co_await a.resign();
        const bool b_won = co_await wait_until([&] { return b_key.has_value(); }, 10s);
        REQUIRE(b_won);
        CHECK(b_key->create_revision == b_place);  // the same key: the place in line was kept
        CHECK(b.is_leader());
        auto second = co_await observer.next();
        REQUIRE(second.has_leader());
        CHECK(second.leader->value == "b");
        co_await b.resign();
      },
      40s);
}

#ifdef ELECTION_LEADER_WORKER
TEST_CASE("leader-worker takes TLS files and credentials and never prints the password",
          "[security][worker]") {
  SecureEtcd etcd("auth");
  SecureEtcd tls("mtls");
  const auto out = std::filesystem::path(ELECTION_TEST_WORK_DIR) /
                   ("security-worker-" + std::to_string(::getpid()));
  auto lines_of = [](std::vector<std::string> argv, const std::filesystem::path& file,
                     bool stop_after_elected) {
    election::test::ChildProcess worker(std::move(argv), file);
    if (stop_after_elected) {
      for (int i = 0; i < 1000; ++i) {
        if (worker.output().find("\"elected\"") != std::string::npos) break;
        std::this_thread::sleep_for(10ms);
      }
      worker.signal(SIGTERM);
    }
    const bool exited = worker.wait_for(10s);
    std::ifstream err(file.string() + ".err");
    std::ostringstream all;
    all << worker.output() << err.rdbuf();
    return std::pair{exited ? worker.wait() : -1, all.str()};
  };
  const std::string election_name = unique("worker");

  auto [ok_code, ok_out] = lines_of(
      {ELECTION_LEADER_WORKER, "--node", "w1", "--json", "--ttl", "2", "--election", election_name,
       "--endpoints", etcd.endpoint(), "--user", std::string("elect:") + password},
      out.string() + "-auth", true);
  INFO(ok_out);
  CHECK(ok_code == 0);
  CHECK_THAT(ok_out, Catch::Contains("\"elected\""));
  CHECK_THAT(ok_out, !Catch::Contains(password));

  auto [bad_code, bad_out] = lines_of(
      {ELECTION_LEADER_WORKER, "--node", "w1", "--json", "--election", election_name, "--endpoints",
       etcd.endpoint(), "--user", "elect", "--password", "wrong-s3cret-guess"},
      out.string() + "-bad", false);
  INFO(bad_out);
  CHECK(bad_code == 1);
  CHECK_THAT(bad_out, Catch::Contains("credentials"));
  CHECK_THAT(bad_out, !Catch::Contains("wrong-s3cret-guess"));

  // The password from a file, and from the environment: never on the command line.
  const auto password_file = out.string() + "-password";
  {
    std::ofstream pw(password_file);
    pw << password << "\n";
  }
  std::string cmdline;
  {
    election::test::ChildProcess worker(
        {ELECTION_LEADER_WORKER, "--node", "w3", "--json", "--ttl", "2", "--election",
         election_name, "--endpoints", etcd.endpoint(), "--user", "elect", "--password-file",
         password_file},
        out.string() + "-file");
    for (int i = 0; i < 1000 && worker.output().find("\"elected\"") == std::string::npos; ++i)
      std::this_thread::sleep_for(10ms);
    std::ifstream proc("/proc/" + std::to_string(worker.pid()) + "/cmdline");
    std::getline(proc, cmdline, '\x01');
    worker.signal(SIGTERM);
    CHECK(worker.wait_for(10s));
    INFO(worker.output());
    CHECK_THAT(worker.output(), Catch::Contains("\"elected\""));
    CHECK_THAT(worker.output(), !Catch::Contains(password));
  }
  CHECK_THAT(cmdline, Catch::Contains("--password-file"));
  CHECK_THAT(cmdline, !Catch::Contains(password));
  {
    election::test::ChildProcess worker(
        {ELECTION_LEADER_WORKER, "--node", "w4", "--json", "--ttl", "2", "--election",
         election_name, "--endpoints", etcd.endpoint(), "--user", "elect"},
        out.string() + "-env", {std::string("LEADER_WORKER_PASSWORD=") + password});
    for (int i = 0; i < 1000 && worker.output().find("\"elected\"") == std::string::npos; ++i)
      std::this_thread::sleep_for(10ms);
    worker.signal(SIGTERM);
    CHECK(worker.wait_for(10s));
    INFO(worker.output());
    CHECK_THAT(worker.output(), Catch::Contains("\"elected\""));
  }
  auto [no_file_code, no_file_out] =
      lines_of({ELECTION_LEADER_WORKER, "--node", "w5", "--endpoints", etcd.endpoint(), "--user",
                "elect", "--password-file", out.string() + "-missing"},
               out.string() + "-missing-out", false);
  CHECK(no_file_code == 2);
  CHECK_THAT(no_file_out, Catch::Contains(out.string() + "-missing"));

  auto [tls_code, tls_out] =
      lines_of({ELECTION_LEADER_WORKER, "--node", "w2", "--json", "--ttl", "2", "--election",
                election_name, "--endpoints", tls.https(), "--cacert", tls.cert("ca.pem"), "--cert",
                tls.cert("client.pem"), "--key", tls.cert("client-key.pem")},
               out.string() + "-tls", true);
  INFO(tls_out);
  CHECK(tls_code == 0);
  CHECK_THAT(tls_out, Catch::Contains("\"elected\""));
}
#endif

// Waits (without blocking the event loop) for a bounce() to finish.
asio::awaitable<void> finished(std::future<void>& done) {
  while (done.wait_for(0ms) != std::future_status::ready) co_await sleep_for(20ms);
  done.get();
}

TEST_CASE("an observer and a waiting campaign ride out etcd away while their token expires",
          "[security][auth]") {
  // Tokens live 2 s; etcd is away for 4 s: renewing the token fails (etcd unreachable) before
  // it works again. That is a failure that passes, not one for the caller.
  SecureEtcd etcd("auth", "--auth-token-ttl 2");
  run(
      [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        election::Client leader_client(executor, auth_options(etcd));
        election::Client client(executor, auth_options(etcd));
        const auto name = unique("outage");
        Participant a(leader_client, name, "a", {.ttl = 10s});
        Participant b(client, name, "b", {.ttl = 10s});
        election::Observer observer(client, name);
        co_await a.campaign();
        auto first = co_await observer.next();
        REQUIRE(first.has_leader());

        std::optional<election::LeaderKey> b_key;
        std::optional<error_code> b_failed;
        auto b_campaign = [&]() -> asio::awaitable<void> {
          try {
            b_key = co_await b.campaign();
          } catch (const system_error& e) {
            b_failed = e.code();
          }
        };
        asio::co_spawn(executor, b_campaign(), asio::detached);
        co_await wait_until([&] { return b.lease_id().has_value(); }, 5s);
        co_await sleep_for(500ms);
        auto queued =
            co_await election::detail::range(*election::detail::access::core(client),
                                             election::detail::candidate_key(name, *b.lease_id()));
        REQUIRE(queued.kvs_size() == 1);
        const auto b_place = queued.kvs(0).create_revision();

        std::optional<election::LeaderEvent> seen;
        std::optional<error_code> observe_failed;
        auto watch = [&]() -> asio::awaitable<void> {
          try {
            seen = co_await observer.next();
          } catch (const system_error& e) {
            observe_failed = e.code();
          }
        };
        asio::co_spawn(executor, watch(), asio::detached);

        auto outage = etcd.bounce(4s);
        co_await finished(outage);
        co_await sleep_for(3s);  // back, and the old tokens long expired
        INFO("observer failed with " << (observe_failed ? observe_failed->message() : "nothing"));
        INFO("b's campaign failed with " << (b_failed ? b_failed->message() : "nothing"));
        CHECK_FALSE(observe_failed);
        CHECK_FALSE(b_failed);

        co_await a.resign();
        const bool b_won = co_await wait_until([&] { return b_key.has_value(); }, 10s);
        REQUIRE(b_won);
        CHECK(b_key->create_revision == b_place);  // the same key: its place in line was kept
        const bool observed = co_await wait_until(
            [&] { return seen.has_value() && seen->has_leader() && seen->leader->value == "b"; },
            5s);
        CHECK(observed);
        co_await b.resign();
      },
      60s);
}

TEST_CASE("a permission lost is reported by one next() and a later next() tries again",
          "[security][auth]") {
  SecureEtcd etcd("auth");
  run(
      [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        election::Client client(executor, auth_options(etcd));
        election::Client root(executor, auth_options(etcd, "root", root_password));
        const auto name = unique("denied");
        election::Observer observer(client, name);
        auto first = co_await observer.next();
        CHECK_FALSE(first.has_leader());

        // The role loses its permission; the watch is created again after a restart (etcd
        // checks a watch's permission when it is created), and etcd refuses it.
        etcd.ctl(std::string("role revoke-permission elect-role --prefix=true ") + prefix);
        auto outage = etcd.bounce(500ms);
        co_await finished(outage);
        auto refused = co_await failure_of([&] { return observer.next(); });
        INFO(refused.message);
        CHECK(refused.code == errc::permission_denied);

        // Granted again: the next call starts the feed again and sees what happens.
        etcd.ctl(std::string("role grant-permission elect-role --prefix=true readwrite ") + prefix);
        std::optional<election::LeaderEvent> next;
        std::optional<error_code> failed;
        auto watch = [&]() -> asio::awaitable<void> {
          try {
            next = co_await observer.next();
          } catch (const system_error& e) {
            failed = e.code();
          }
        };
        asio::co_spawn(executor, watch(), asio::detached);
        co_await sleep_for(1s);
        Participant p(root, name, "p", {.ttl = 5s});
        co_await p.campaign();
        const bool saw = co_await wait_until([&] { return next || failed; }, 10s);
        REQUIRE(saw);
        INFO("failed with " << (failed ? failed->message() : "nothing"));
        REQUIRE(next);
        REQUIRE(next->has_leader());
        CHECK(next->leader->value == "p");
        co_await p.resign();
      },
      60s);
}

TEST_CASE("a user allowed only the election's prefix leads and resigns unsigned: the next waits",
          "[security][auth]") {
  SecureEtcd etcd("auth");
  const auto name = unique("narrow");
  etcd.ctl("user add narrow:" + std::string(password));
  etcd.ctl("role add narrow-role");
  etcd.ctl("role grant-permission narrow-role --prefix=true readwrite " + name + "/");
  etcd.ctl("user grant-role narrow narrow-role");
  run(
      [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        election::Client client(executor, auth_options(etcd, "narrow"));
        Participant a(client, name, "a", {.ttl = 5s});
        Participant b(client, name, "b", {.ttl = 5s});
        election::Observer observer(client, name);
        co_await a.campaign();
        auto first = co_await observer.next();  // the feed falls back to the prefix alone
        REQUIRE(first.has_leader());
        CHECK(first.leader->value == "a");

        std::optional<election::LeaderKey> b_key;
        auto b_campaign = [&]() -> asio::awaitable<void> { b_key = co_await b.campaign(); };
        asio::co_spawn(executor, b_campaign(), asio::detached);
        const bool queued = co_await wait_until([&] { return b.lease_id().has_value(); }, 5s);
        REQUIRE(queued);
        co_await sleep_for(300ms);
        co_await a.resign();  // its signature refused: the resignation goes on without it
        const bool won = co_await wait_until([&] { return b_key.has_value(); }, 5s);
        REQUIRE(won);
        REQUIRE(b.takeover_delay());
        CHECK(*b.takeover_delay() == 200ms);
        REQUIRE(b.takeover_wait());
        CHECK(*b.takeover_wait() > 100ms);  // unsigned: the guard held
        auto second = co_await observer.next();
        REQUIRE(second.has_leader());
        CHECK(second.leader->value == "b");
        co_await b.resign();
      },
      40s);
}
