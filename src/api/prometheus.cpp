#include "election/prometheus.hpp"

#include "api/access.hpp"
#include "base/throw.hpp"

#include <prometheus/check_names.h>

#include <chrono>

namespace election::prometheus {

namespace {

using ::prometheus::ClientMetric;
using ::prometheus::MetricFamily;
using ::prometheus::MetricType;

// The reasons every Leadership exports from the start, at 0, so that rate() and increase() see
// the first end too. Others appear when they happen.
constexpr const char* known_reasons[] = {"resigned",    "lease-expired",   "lease-revoked",
                                         "key-deleted", "deadline-passed", "work-finished",
                                         "work-failed", "shutdown",        "client-closed"};

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

void check(const Labels& labels, bool for_leadership) {
  for (const auto& [name, value] : labels) {
    if (!::prometheus::CheckLabelName(name))
      throw_error(errc::invalid_argument,
                  "prometheus collector: '" + name + "' is not a valid Prometheus label name");
    if (for_leadership && name == "election")
      throw_error(errc::invalid_argument,
                  "prometheus collector: the label 'election' is the collector's own");
  }
}

class Families {
 public:
  MetricFamily& family(const std::string& name, const std::string& help, MetricType type) {
    auto [it, added] = index_.try_emplace(name, families_.size());
    if (added) families_.push_back(MetricFamily{name, help, type, {}});
    return families_[it->second];
  }

  static std::vector<ClientMetric::Label> labels(const Labels& labels, const Labels& extra = {}) {
    std::vector<ClientMetric::Label> out;
    for (const auto& [name, value] : labels) out.push_back({name, value});
    for (const auto& [name, value] : extra) out.push_back({name, value});
    return out;
  }

  void gauge(const std::string& name, const std::string& help, const Labels& l, double value) {
    ClientMetric m;
    m.label = labels(l);
    m.gauge.value = value;
    family(name, help, MetricType::Gauge).metric.push_back(std::move(m));
  }

  void counter(const std::string& name, const std::string& help, const Labels& l, double value,
               const Labels& extra = {}) {
    ClientMetric m;
    m.label = labels(l, extra);
    m.counter.value = value;
    family(name, help, MetricType::Counter).metric.push_back(std::move(m));
  }

  void histogram(const std::string& name, const std::string& help, const Labels& l,
                 const Histogram& h) {
    ClientMetric m;
    m.label = labels(l);
    m.histogram.sample_count = h.count;
    m.histogram.sample_sum = h.sum;
    for (std::size_t i = 0; i < Histogram::bounds.size(); ++i)
      m.histogram.bucket.push_back({h.buckets[i], Histogram::bounds[i]});
    family(name, help, MetricType::Histogram).metric.push_back(std::move(m));
  }

  std::vector<MetricFamily> take() { return std::move(families_); }

 private:
  std::vector<MetricFamily> families_;
  std::map<std::string, std::size_t> index_;
};

void export_leadership(Families& out, const Labels& l, const LeadershipMetrics& m,
                       const Health& h) {
  out.gauge("election_is_leader", "1 while this process leads the election.", l,
            m.is_leader ? 1 : 0);
  out.gauge("election_healthy",
            "1 while the leader loop is healthy (Leadership::health(); the reason is on "
            "/healthz).",
            l, h.healthy ? 1 : 0);
  out.counter("election_terms_won_total", "Leaderships won.", l, static_cast<double>(m.terms_won));
  auto reasons = m.ends_by_reason;
  for (const char* r : known_reasons) reasons.try_emplace(r, 0);
  for (const auto& [reason, count] : reasons)
    out.counter("election_leadership_ends_total", "Leaderships ended, by reason.", l,
                static_cast<double>(count), {{"reason", reason}});
  out.counter("election_work_overruns_total",
              "Leaderships whose work was still running when another candidate could lead.", l,
              static_cast<double>(m.work_overruns));
  out.counter("election_retried_errors_total", "Failed campaigns, retried after a pause.", l,
              static_cast<double>(m.retried_errors));
  out.counter("election_observer_events_total", "Leadership changes of the election seen.", l,
              static_cast<double>(m.observer_events));
  out.counter("election_time_in_line_seconds_total",
              "Time spent campaigning: granting a lease and waiting in line.", l,
              seconds(m.time_in_line));
  out.gauge("election_renewal_age_seconds",
            "While leading: time since the send of the last renewal etcd answered; 0 otherwise.", l,
            seconds(m.since_renewal));
}

void export_client(Families& out, const Labels& l, const ClientMetrics& m) {
  const auto n = [](std::uint64_t v) { return static_cast<double>(v); };
  out.counter("election_renewals_sent_total", "Lease renewals sent.", l, n(m.renewals_sent));
  out.counter("election_renewals_answered_total", "Lease renewals etcd answered.", l,
              n(m.renewals_answered));
  out.counter("election_renewals_late_total",
              "Lease renewals answered after their round-trip timeout.", l, n(m.renewals_late));
  out.histogram("election_renewal_seconds", "Round trip of each answered lease renewal.", l,
                m.renewal_seconds);
  out.counter("election_keep_alive_streams_total", "LeaseKeepAlive streams opened.", l,
              n(m.keep_alive_streams));
  out.counter("election_keep_alive_hedges_total",
              "LeaseKeepAlive streams opened beside one that stopped answering.", l,
              n(m.keep_alive_hedges));
  out.counter("election_watch_streams_total", "Watch streams opened.", l, n(m.watch_streams));
  out.counter("election_watch_stalls_total", "Watch streams given up on because they fell silent.",
              l, n(m.watch_stalls));
  out.gauge("election_leases", "Leases kept alive now.", l, n(m.leases));
  out.gauge("election_watches", "Watches open now.", l, n(m.watches));
  out.counter("election_internal_errors_total",
              "Background work that failed with an exception nothing expected.", l,
              n(m.internal_errors));
}

}  // namespace

void Collector::add(const Client& client, Labels labels) {
  check(labels, false);
  std::lock_guard lock(mutex_);
  clients_.push_back({detail::access::client_probe(client), std::move(labels)});
}

void Collector::add(const Leadership& leadership, Labels labels) {
  check(labels, true);
  labels["election"] = leadership.election();
  std::lock_guard lock(mutex_);
  leaderships_.push_back({detail::access::leadership_probe(leadership), std::move(labels)});
}

std::vector<MetricFamily> Collector::Collect() const {
  std::lock_guard lock(mutex_);
  Families out;
  std::erase_if(leaderships_, [&](const LeadershipSource& s) {
    auto now = s.probe();
    if (now) export_leadership(out, s.labels, now->first, now->second);
    return !now;
  });
  std::erase_if(clients_, [&](const ClientSource& s) {
    auto now = s.probe();
    if (now) export_client(out, s.labels, *now);
    return !now;
  });
  return out.take();
}

}  // namespace election::prometheus
