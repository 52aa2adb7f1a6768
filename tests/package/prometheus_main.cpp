// Links against election::prometheus the way a user would: a Client and a Leadership exported
// through the collector, serialized in Prometheus's text format. No etcd needed (nothing is
// run). Exit 0 when the exposition names both, 1 otherwise.
#include <election/election.hpp>
#include <election/prometheus.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <prometheus/text_serializer.h>

#include <iostream>
#include <memory>

namespace {

boost::asio::awaitable<void> idle(election::Participant&, const election::LeaderKey&) {
  co_return;
}

}  // namespace

int main() {
  boost::asio::io_context io;
  election::Client client(io.get_executor(), {.endpoints = {"127.0.0.1:1"}});
  election::Leadership leadership(client, "package-check", "app", idle);
  auto collector = std::make_shared<election::prometheus::Collector>();
  collector->add(client);
  collector->add(leadership);
  const auto text = prometheus::TextSerializer().Serialize(collector->Collect());
  const bool ok = text.find("election_is_leader{election=\"package-check\"} 0") !=
                      std::string::npos &&
                  text.find("election_renewals_sent_total 0") != std::string::npos;
  std::cout << "package check (prometheus): " << (ok ? "exposition as expected" : text) << '\n';
  return ok ? 0 : 1;
}
