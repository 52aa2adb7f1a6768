#include "api/access.hpp"
#include "api/launch.hpp"
#include "transport/client_core.hpp"

namespace election {

namespace asio = boost::asio;

Client::Client(executor_type executor, ClientOptions options)
    : core_(std::make_shared<detail::ClientCore>(std::move(executor), std::move(options))) {}

Client::~Client() { core_->close(); }

Client::executor_type Client::get_executor() const { return core_->executor(); }

const ClientOptions& Client::options() const { return core_->options(); }

ClientMetrics Client::metrics() const { return core_->stats().snapshot(); }

std::function<std::optional<ClientMetrics>()> detail::access::client_probe(const Client& client) {
  return [weak = std::weak_ptr<ClientCore>(client.core_)]() -> std::optional<ClientMetrics> {
    if (auto core = weak.lock()) return core->stats().snapshot();
    return std::nullopt;
  };
}

namespace detail {
namespace {

asio::awaitable<void> connect_of(std::shared_ptr<ClientCore> core) { co_await core->connect(); }

asio::awaitable<std::string> server_version_of(std::shared_ptr<ClientCore> core) {
  co_await core->connect();
  co_return co_await core->server_version();
}

}  // namespace
}  // namespace detail

asio::awaitable<void> Client::connect() {
  return detail::run_on(core_->executor(), detail::connect_of(core_),
                        detail::Cancellation::without_effects);
}

void Client::start_connect(std::shared_ptr<detail::ClientCore> core, Handler<> handler,
                           diagnostics* diag) {
  auto executor = core->executor();
  detail::launch(executor, detail::connect_of(std::move(core)), std::move(handler), diag,
                 detail::Cancellation::without_effects);
}

asio::awaitable<std::string> Client::server_version() {
  return detail::run_on(core_->executor(), detail::server_version_of(core_),
                        detail::Cancellation::without_effects);
}

void Client::start_server_version(std::shared_ptr<detail::ClientCore> core,
                                  Handler<std::string> handler, diagnostics* diag) {
  auto executor = core->executor();
  detail::launch(executor, detail::server_version_of(std::move(core)), std::move(handler), diag,
                 detail::Cancellation::without_effects);
}

}  // namespace election
