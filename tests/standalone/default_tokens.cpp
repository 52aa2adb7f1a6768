// Every completion-token operation compiles without a token (the default, deferred), awaited
// in an Asio coroutine, with and without a diagnostics&; and launched later with a callback.
// Compiled only: what these calls do against etcd is tests/integration/token_test.cpp's.
#include <election/election.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;

namespace {

asio::awaitable<void> every_default(election::Client& client, election::Lease& lease,
                                    election::Session& session, election::Participant& p,
                                    election::Observer& observer,
                                    election::Leadership& leadership, election::Mutex& mutex) {
  election::diagnostics why;

  co_await client.async_connect();
  co_await client.async_connect(why);
  std::string version = co_await client.async_server_version();
  version = co_await client.async_server_version(why);

  election::Lease granted =
      co_await election::Lease::async_grant(client, std::chrono::seconds(5), {});
  granted = co_await election::Lease::async_grant(client, std::chrono::seconds(5), {}, why);
  boost::system::error_code lost = co_await lease.async_wait_lost();
  lost = co_await lease.async_wait_lost(why);
  co_await lease.async_revoke();
  co_await lease.async_revoke(why);
  election::LeaseTimeToLive left = co_await lease.async_time_to_live();
  left = co_await lease.async_time_to_live(why);

  std::int64_t id = co_await session.async_start();
  id = co_await session.async_start(why);

  id = co_await p.async_acquire_lease();
  id = co_await p.async_acquire_lease(why);
  election::LeaderKey key = co_await p.async_campaign();
  key = co_await p.async_campaign(why);
  boost::system::error_code ended = co_await p.async_keep_alive();
  ended = co_await p.async_keep_alive(why);
  co_await p.async_proclaim("v");
  co_await p.async_proclaim("v", why);
  std::int64_t revision = co_await p.async_put_if_leader("k", "v");
  revision = co_await p.async_put_if_leader("k", "v", why);
  std::optional<election::LeaderInfo> leader = co_await p.async_leader();
  leader = co_await p.async_leader(why);
  std::vector<election::LeaderInfo> line = co_await p.async_candidates();
  line = co_await p.async_candidates(why);
  co_await p.async_resign();
  co_await p.async_resign(why);

  election::LeaderEvent event = co_await observer.async_next();
  event = co_await observer.async_next(why);

  co_await leadership.async_run();
  co_await leadership.async_run(why);

  election::LockKey held = co_await mutex.async_lock();
  held = co_await mutex.async_lock(why);
  held = co_await mutex.async_try_lock();
  held = co_await mutex.async_try_lock(why);
  revision = co_await mutex.async_put_if_held("k", "v");
  revision = co_await mutex.async_put_if_held("k", "v", why);
  ended = co_await mutex.async_wait_lost();
  ended = co_await mutex.async_wait_lost(why);
  co_await mutex.async_unlock();
  co_await mutex.async_unlock(why);
  (void)version, (void)granted, (void)lost, (void)left, (void)id, (void)key, (void)ended,
      (void)revision, (void)leader, (void)line, (void)event, (void)held;
}

// The default token's operation, launched later with a callback, with and without diagnostics.
[[maybe_unused]] void launched_later(election::Participant& p, election::diagnostics& why) {
  auto op = p.async_campaign();
  std::move(op)([](boost::system::error_code, election::LeaderKey) {});
  auto put = p.async_put_if_leader("k", "v", why);
  std::move(put)([](boost::system::error_code, std::int64_t) {});
}

}  // namespace

// Referenced so that the coroutine is instantiated.
[[maybe_unused]] auto* const every_default_token_form = &every_default;
