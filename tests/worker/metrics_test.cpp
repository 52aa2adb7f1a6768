// leader-worker --metrics: /metrics and /healthz as a user's monitoring sees them, checked by
// Debian's promtool and scraped by a real Prometheus server on loopback.
#include "support/etcd_cluster.hpp"
#include "support/http.hpp"
#include "support/names.hpp"
#include "support/process.hpp"
#include "worker/worker_process.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#ifndef ELECTION_ETCD_LEASH
#error "ELECTION_ETCD_LEASH must name etcd-leash"
#endif

using namespace worker_test;
using election::test::free_port;
using election::test::http_get;

namespace {

std::vector<std::string> with_metrics(std::vector<std::string> args, std::uint16_t port) {
  args.push_back("--metrics");
  args.push_back("127.0.0.1:" + std::to_string(port));
  return args;
}

bool scrapes(std::uint16_t port) {
  auto reply = http_get(port, "/metrics");
  return reply && reply->status == 200;
}

// The value of a sample line `name{labels} value` in an exposition, if it is there.
std::optional<double> sample(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::stod(text.substr(at + series.size() + 2));
}

// A Prometheus server on loopback, run under etcd-leash so that it dies with this test however
// the test ends; stopped by its pid.
class PrometheusServer {
 public:
  PrometheusServer(const std::filesystem::path& dir, const std::vector<std::uint16_t>& targets)
      : dir_(dir), port_(free_port()) {
    std::string list;
    for (auto t : targets)
      list += (list.empty() ? "'127.0.0.1:" : ", '127.0.0.1:") + std::to_string(t) + "'";
    std::ofstream(dir / "prometheus.yml") << "global:\n"
                                             "  scrape_interval: 1s\n"
                                             "  scrape_timeout: 900ms\n"
                                             "  evaluation_interval: 1s\n"
                                             "scrape_configs:\n"
                                             "  - job_name: leader-worker\n"
                                             "    static_configs:\n"
                                             "      - targets: ["
                                          << list << "]\n";
    const auto pid_file = dir / "prometheus.pid";
    ChildProcess leash(
        {ELECTION_ETCD_LEASH, "--owner", std::to_string(::getpid()), "--pid-file",
         pid_file.string(), "--", "prometheus",
         "--config.file=" + (dir / "prometheus.yml").string(),
         "--storage.tsdb.path=" + (dir / "data").string(),
         "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"},
        dir / "prometheus.log");
    REQUIRE(leash.wait_for(10s));
    REQUIRE(leash.wait() == 0);
    pid_ = election::test::detail::read_pid(pid_file);
    INFO(read_text(dir / "prometheus.log.err"));
    REQUIRE(poll([&] { return http_get(port_, "/-/ready").has_value(); }, 30s));
  }
  ~PrometheusServer() {
    if (pid_ > 0 && ::kill(pid_, SIGTERM) == 0) poll([&] { return ::kill(pid_, 0) != 0; }, 10s);
  }

  /// The result of an instant query, as instance -> value ("" for a result without instance).
  std::map<std::string, double> query(const std::string& promql) const {
    std::string encoded;
    for (unsigned char c : promql) {
      if (std::isalnum(c) || c == '_' || c == '.' || c == '-') {
        encoded += static_cast<char>(c);
      } else {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%%%02X", c);
        encoded += hex;
      }
    }
    std::map<std::string, double> out;
    const auto reply = http_get(port_, "/api/v1/query?query=" + encoded);
    if (!reply || reply->status != 200) return out;
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[t,"v"]},...]}}
    const auto& body = reply->body;
    std::size_t at = 0;
    while ((at = body.find("{\"metric\":{", at)) != std::string::npos) {
      const auto value_at = body.find("\"value\":[", at);
      if (value_at == std::string::npos) break;
      const auto metric = body.substr(at, value_at - at);
      std::string instance;
      if (const auto i = metric.find("\"instance\":\""); i != std::string::npos) {
        const auto from = i + 12;
        instance = metric.substr(from, metric.find('"', from) - from);
      }
      const auto quote = body.find('"', body.find(',', value_at) + 1);
      out[instance] = std::stod(body.substr(quote + 1));
      at = value_at;
    }
    return out;
  }

  /// The single value of a query that aggregates to one series, if it has one.
  std::optional<double> scalar(const std::string& promql) const {
    const auto r = query(promql);
    if (r.size() != 1) return std::nullopt;
    return r.begin()->second;
  }

 private:
  std::filesystem::path dir_;
  std::uint16_t port_;
  pid_t pid_ = -1;
};

}  // namespace

TEST_CASE("leader-worker --metrics serves /metrics that promtool accepts, and /healthz",
          "[worker][metrics]") {
  const auto dir = work_dir("metrics-one");
  const auto name = election::test::unique_name("worker-metrics");
  const auto port = free_port();
  Worker worker("solo", with_metrics(worker_args("solo", name), port), dir);
  REQUIRE(poll([&] { return !worker.events("elected").empty(); }, 15s));
  REQUIRE(poll([&] { return scrapes(port); }, 5s));
  std::optional<election::test::HttpReply> metrics;
  // The first renewals are answered within a TTL/3 of the win.
  REQUIRE(poll(
      [&] {
        metrics = http_get(port, "/metrics");
        return metrics && sample(metrics->body, "election_renewals_answered_total").value_or(0) > 0;
      },
      5s));
  INFO(metrics->body);
  CHECK(metrics->headers.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  const auto label = "{election=\"" + name + "\"}";
  CHECK(sample(metrics->body, "election_is_leader" + label) == 1.0);
  CHECK(sample(metrics->body, "election_healthy" + label) == 1.0);
  CHECK(sample(metrics->body, "election_terms_won_total" + label) == 1.0);
  CHECK(sample(metrics->body, "election_leadership_ends_total{election=\"" + name +
                                  "\",reason=\"key-deleted\"}") == 0.0);
  CHECK(sample(metrics->body, "election_leases") == 1.0);
  CHECK(sample(metrics->body, "election_renewal_seconds_bucket{le=\"+Inf\"}") ==
        sample(metrics->body, "election_renewal_seconds_count"));
  CHECK(metrics->body.find("# TYPE election_renewal_seconds histogram") != std::string::npos);

  // promtool, Prometheus's own checker, finds nothing wrong with the exposition.
  {
    std::ofstream(dir / "metrics.txt") << metrics->body;
    const auto command = "promtool check metrics < " + (dir / "metrics.txt").string() + " > " +
                         (dir / "promtool.out").string() + " 2>&1";
    const int status = std::system(command.c_str());
    INFO("promtool: " << read_text(dir / "promtool.out"));
    CHECK(status == 0);
  }

  const auto health = http_get(port, "/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body == "ok leading\n");
  const auto missing = http_get(port, "/nothing-here");
  REQUIRE(missing);
  CHECK(missing->status == 404);

  worker.process().signal(SIGTERM);
  REQUIRE(worker.process().wait_for(5s));
  CHECK(worker.process().wait() == 0);
}

TEST_CASE("leader-worker --metrics: a taken port or a bad address exits 2, naming it",
          "[worker][metrics]") {
  const auto dir = work_dir("metrics-bad");
  SECTION("the port is taken") {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor taken(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    const auto port = taken.local_endpoint().port();
    Worker worker("a", with_metrics(worker_args("a", election::test::unique_name("m")), port), dir);
    REQUIRE(worker.process().wait_for(10s));
    CHECK(worker.process().wait() == 2);
    const auto err = worker.stderr_text();
    CHECK(err.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
    CHECK(err.find("in use") != std::string::npos);
    CHECK(worker.events("elected").empty());
  }
  SECTION("not HOST:PORT") {
    auto args = worker_args("a", election::test::unique_name("m"));
    args.insert(args.end(), {"--metrics", "127.0.0.1:http"});
    Worker worker("a", args, dir);
    REQUIRE(worker.process().wait_for(10s));
    CHECK(worker.process().wait() == 2);
    CHECK(worker.stderr_text().find("127.0.0.1:http") != std::string::npos);
  }
  SECTION("a host that is not an address") {
    auto args = worker_args("a", election::test::unique_name("m"));
    args.insert(args.end(), {"--metrics", "localhost:9464"});
    Worker worker("a", args, dir);
    REQUIRE(worker.process().wait_for(10s));
    CHECK(worker.process().wait() == 2);
    CHECK(worker.stderr_text().find("localhost") != std::string::npos);
  }
}

TEST_CASE("a real Prometheus scrapes three workers: one leader before and after a SIGKILL",
          "[worker][metrics][prometheus]") {
  const auto dir = work_dir("metrics-prometheus");
  const auto name = election::test::unique_name("worker-prometheus");
  std::vector<std::uint16_t> ports;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < 3; ++i) {
    ports.push_back(free_port());
    std::string node = "w";  // not "w" + std::string: g++ 12 -Wrestrict false positive
    node += std::to_string(i + 1);
    workers.push_back(
        std::make_unique<Worker>(node, with_metrics(worker_args(node, name), ports.back()), dir));
    // One at a time: the first started leads.
    if (i == 0) REQUIRE(poll([&] { return !workers[0]->events("elected").empty(); }, 15s));
  }
  for (auto p : ports) REQUIRE(poll([&] { return scrapes(p); }, 10s));

  PrometheusServer prometheus(dir, ports);
  const auto leader_of = [&] {
    std::string instance;
    for (const auto& [where, v] : prometheus.query("election_is_leader == 1")) instance = where;
    return instance;
  };
  INFO("prometheus log: " << read_text(dir / "prometheus.log.err"));
  REQUIRE(poll([&] { return prometheus.scalar("count(up == 1)") == 3.0; }, 30s));
  REQUIRE(poll([&] { return prometheus.scalar("sum(election_is_leader)") == 1.0; }, 15s));
  const auto first = "127.0.0.1:" + std::to_string(ports[0]);
  CHECK(leader_of() == first);
  const auto won_before = prometheus.query("election_terms_won_total");
  CHECK(won_before.size() == 3);

  workers[0]->process().signal(SIGKILL);
  workers[0]->process().wait();
  // The killed target goes down (its series go stale); a successor leads, and Prometheus sees
  // exactly one leader again.
  std::string successor;
  REQUIRE(poll(
      [&] {
        if (prometheus.scalar("sum(election_is_leader)") != 1.0) return false;
        successor = leader_of();
        return !successor.empty() && successor != first;
      },
      30s));
  CHECK(prometheus.scalar("count(up == 1)") == 3.0 - 1.0);
  REQUIRE(won_before.count(successor));
  const auto won_after = prometheus.query("election_terms_won_total");
  REQUIRE(won_after.count(successor));
  CHECK(won_after.at(successor) == won_before.at(successor) + 1);

  for (std::size_t i = 1; i < workers.size(); ++i) workers[i]->process().signal(SIGTERM);
  for (std::size_t i = 1; i < workers.size(); ++i) {
    REQUIRE(workers[i]->process().wait_for(5s));
    CHECK(workers[i]->process().wait() == 0);
  }
}
