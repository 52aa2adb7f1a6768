// A leader's writes, fenced by its key's create revision: etcd applies them only while that key
// exists, so a deposed leader's late write is refused by etcd itself.
#include "api/participant_state.hpp"

#include "transport/kv.hpp"

namespace election::detail {

asio::awaitable<void> proclaim_of(std::shared_ptr<ParticipantState> s, std::string value) {
  s->check_live("proclaim");
  detail::check_value_size(value, "proclaim");
  auto term = s->term;
  if (!term || !term->leading())
    throw_error(errc::not_leader, "proclaim: this participant does not lead");
  if (s->proclaiming)
    throw_error(errc::invalid_argument, "proclaim: another proclaim() is in flight");
  detail::Busy busy(s->proclaiming);
  const auto& key = term->key();
  auto request = detail::guarded_by(key.key, key.create_revision);
  detail::put_candidate(request, key.key, value, key.lease);
  auto reply = co_await s->core->call_retrying(
      "proclaim", s->core->kv().async(), &etcdserverpb::KV::Stub::async::Txn, std::move(request));
  if (!reply.succeeded())
    throw_error(errc::not_leader, "proclaim: leader key " + key.key + " at revision " +
                                      std::to_string(key.create_revision) + " no longer exists");
  s->value = std::move(value);
}

asio::awaitable<std::int64_t> put_if_leader_of(std::shared_ptr<ParticipantState> s, std::string key,
                                               std::string value) {
  s->check_live("put_if_leader");
  detail::check_value_size(value, "put_if_leader");
  s->core->check_outside_elections(key, "put_if_leader");
  auto term = s->term;
  if (!term || !term->leading())
    throw_error(errc::not_leader, "put_if_leader " + key + ": this participant does not lead");
  const auto& own = term->key();
  auto request = detail::guarded_by(own.key, own.create_revision);
  auto* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(std::move(value));
  // Not retried: a write that etcd may have applied is not sent twice.
  auto reply = co_await s->core->call("put_if_leader", s->core->kv().async(),
                                      &etcdserverpb::KV::Stub::async::Txn, std::move(request));
  if (!reply.succeeded())
    throw_error(errc::not_leader, "put_if_leader " + key + ": etcd refused the write, leader key " +
                                      own.key + " at revision " +
                                      std::to_string(own.create_revision) + " no longer exists");
  co_return reply.header().revision();
}

}  // namespace election::detail
