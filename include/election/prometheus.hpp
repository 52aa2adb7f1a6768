// election::prometheus: a Client's and its Leaderships' metrics in a prometheus-cpp registry or
// exposer. The optional target election::prometheus (built when prometheus-cpp is found).
//
//   auto metrics = std::make_shared<election::prometheus::Collector>();
//   metrics->add(client);
//   metrics->add(leadership);
//   exposer.RegisterCollectable(metrics);           // prometheus::Exposer (prometheus-cpp-pull)
//   // or: prometheus::TextSerializer().Serialize(metrics->Collect())
//
// What is exported (every Leadership's series carry election="NAME", plus the labels given to
// add()):
//
//   election_is_leader                      gauge    1 while it leads
//   election_healthy                        gauge    1 while Leadership::health() is healthy
//   election_terms_won_total                counter
//   election_leadership_ends_total{reason}  counter  reason_name(): resigned, lease-expired,
//                                                    key-deleted, deadline-passed, ...
//   election_work_overruns_total            counter  work still running after its turn ended
//   election_retried_errors_total           counter  failed campaigns, retried
//   election_observer_events_total          counter  leadership changes seen
//   election_time_in_line_seconds_total     counter  time spent campaigning
//   election_renewal_age_seconds            gauge    while leading: since the last answered
//                                                    renewal was sent
//   election_renewals_sent_total, election_renewals_answered_total, election_renewals_late_total
//   election_renewal_seconds                histogram round trip of each answered renewal
//   election_keep_alive_streams_total, election_keep_alive_hedges_total,
//   election_watch_streams_total, election_watch_stalls_total       counters (streams opened)
//   election_leases, election_watches       gauges   kept alive / watched now
#pragma once

#include "election/client.hpp"
#include "election/leadership.hpp"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace election::prometheus {

using Labels = std::map<std::string, std::string>;

/// A prometheus-cpp Collectable over Clients and Leaderships. It keeps none of them alive: one
/// that is destroyed drops out of the next scrape. Collect() may run on any thread (an
/// exposer's), at the same time as the Client's executor runs.
class Collector : public ::prometheus::Collectable {
 public:
  /// The Client's keep-alive and watch metrics, labelled with `labels` (distinguish Clients of
  /// one process by a label). Throws errc::invalid_argument for a label name Prometheus does
  /// not accept.
  void add(const Client& client, Labels labels = {});
  /// The Leadership's metrics and health, labelled election="NAME" and with `labels`.
  void add(const Leadership& leadership, Labels labels = {});

  std::vector<::prometheus::MetricFamily> Collect() const override;

 private:
  struct ClientSource {
    std::function<std::optional<ClientMetrics>()> probe;
    Labels labels;
  };
  struct LeadershipSource {
    std::function<std::optional<std::pair<LeadershipMetrics, Health>>()> probe;
    Labels labels;
  };
  mutable std::mutex mutex_;
  mutable std::vector<ClientSource> clients_;
  mutable std::vector<LeadershipSource> leaderships_;
};

}  // namespace election::prometheus
