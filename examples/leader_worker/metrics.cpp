// The definition of metrics.hpp: a path of leader-worker's --metrics endpoint, to its response.
#include "metrics.hpp"

#include <prometheus/text_serializer.h>

#include <string>
#include <string_view>

namespace leader_worker {

// /metrics: the Prometheus text format; /healthz: 200 "ok STATE" or 503 and the reason.
HttpEndpoint::Handler metrics_handler(const election::prometheus::Collector& collector,
                                      const election::Leadership& leadership) {
  return [&collector, &leadership](std::string_view path) -> HttpResponse {
    if (path == "/metrics")
      return {200, "text/plain; version=0.0.4; charset=utf-8",
              prometheus::TextSerializer().Serialize(collector.Collect())};
    if (path == "/healthz") {
      const auto h = leadership.health();
      const std::string state = election::state_name(h.state);
      if (h.healthy) return {200, "text/plain; charset=utf-8", "ok " + state + "\n"};
      return {503, "text/plain; charset=utf-8", "unhealthy " + state + ": " + h.reason + "\n"};
    }
    return {404, "text/plain; charset=utf-8", "not found: try /metrics or /healthz\n"};
  };
}

}  // namespace leader_worker
