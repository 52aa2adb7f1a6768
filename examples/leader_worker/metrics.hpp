// What leader-worker's --metrics endpoint answers (built only with election::prometheus, when
// LEADER_WORKER_METRICS is defined): /metrics is the Prometheus text format of the library's
// collector, /healthz is 200 "ok STATE" or 503 and the reason from Leadership::health(), and any
// other path is 404. The HTTP around it is http_endpoint.hpp. Definition in metrics.cpp.
#pragma once

#include "http_endpoint.hpp"

#include <election/leadership.hpp>
#include <election/prometheus.hpp>

namespace leader_worker {

/// The handler for HttpEndpoint. It keeps references: both must outlive the endpoint.
HttpEndpoint::Handler metrics_handler(const election::prometheus::Collector& collector,
                                      const election::Leadership& leadership);

}  // namespace leader_worker
