#include "engine/entry_batcher.hpp"

#include "transport/kv.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <set>
#include <string_view>

namespace election::detail {

namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::system_error;

EntryBatcher::EntryBatcher(const std::shared_ptr<ClientCore>& core) : core_(core) {}

std::shared_ptr<EntryBatcher> EntryBatcher::of(const std::shared_ptr<ClientCore>& core) {
  if (!core->entry_batcher) core->entry_batcher = std::make_shared<EntryBatcher>(core);
  return core->entry_batcher;
}

asio::awaitable<EntryBatcher::Result> EntryBatcher::enter(Entry entry) {
  auto core = core_.lock();
  if (!core) throw_error(errc::client_closed, "campaign");
  auto p = std::make_shared<Pending>(std::move(entry), core->executor());
  pending_.push_back(p);
  schedule();
  try {
    co_await p->done.wait();
  } catch (...) {
    // Cancelled while gathered or in flight: not sent if it is still here. In flight, its Txn
    // may still create the key: the withdrawal that deletes it waits for the answer.
    p->abandoned = true;
    if (std::erase(pending_, p) != 0) {
      p->done.set();
    } else if (!p->done.is_set()) {
      std::erase_if(abandoned_, [](const auto& w) { return w.expired(); });
      abandoned_.push_back(p);
    }
    throw;
  }
  if (p->failure) std::rethrow_exception(p->failure);
  co_return std::move(*p->result);
}

void EntryBatcher::schedule() {
  if (scheduled_) return;
  auto core = core_.lock();
  if (!core) return;
  scheduled_ = true;
  // Everything entered before this runs goes in the same batches.
  asio::post(core->executor(), [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->flush();
  });
}

void EntryBatcher::flush() {
  scheduled_ = false;
  auto core = core_.lock();
  if (!core) return;
  while (!pending_.empty() && in_flight_ < max_in_flight) {
    // One entry per election in a Txn: every put of one Txn gets the same create revision,
    // and two candidates of one election with the same create revision would both stand
    // first in line for etcd's own clients (each waits only for keys with a lower one).
    Batch batch;
    std::set<std::string_view> elections;
    std::deque<std::shared_ptr<Pending>> later;
    std::size_t bytes = 0;
    while (!pending_.empty() && batch.size() < limit_) {
      auto& next = pending_.front();
      const auto& e = next->entry;
      if (elections.count(e.line_key)) {
        later.push_back(std::move(next));
        pending_.pop_front();
        continue;
      }
      const auto size = e.key.size() * 2 + e.value.size() + e.line_key.size() * 2;
      if (!batch.empty() && bytes + size > max_bytes) break;
      bytes += size;
      elections.insert(e.line_key);
      batch.push_back(std::move(next));
      pending_.pop_front();
    }
    pending_.insert(pending_.begin(), later.begin(), later.end());
    ++in_flight_;
    asio::co_spawn(core->executor(), send(shared_from_this(), core, std::move(batch)),
                   ClientCore::background(core, "campaign entries"));
  }
}

std::shared_ptr<AsyncEvent> EntryBatcher::unanswered(const std::string& key) {
  for (const auto& weak : abandoned_) {
    auto p = weak.lock();
    if (p && !p->done.is_set() && p->entry.key == key) return {p, &p->done};
  }
  return nullptr;
}

EntryBatcher::Batch EntryBatcher::drop_abandoned(Batch batch) {
  std::erase_if(batch, [](const auto& p) {
    if (!p->abandoned) return false;
    p->done.set();  // never sent again: answered as far as its withdrawal is concerned
    return true;
  });
  return batch;
}

bool EntryBatcher::whole_batch(const error_code& ec, const Batch& batch) {
  if (ec == errc::client_closed || ec == errc::auth_failed) return true;
  if (ec != errc::lease_expired) return false;
  // "requested lease not found" names no lease: the whole batch's only if it has one.
  return std::all_of(batch.begin(), batch.end(),
                     [&](const auto& p) { return p->entry.lease == batch.front()->entry.lease; });
}

bool EntryBatcher::too_big(const error_code& ec, const std::string& message) {
  // etcd's "too many operations in txn request" and "request is too large" (InvalidArgument).
  return message.find("too many operations") != std::string::npos ||
         message.find("too large") != std::string::npos || ec == errc::value_too_large;
}

asio::awaitable<void> EntryBatcher::send(std::shared_ptr<EntryBatcher> self,
                                         std::shared_ptr<ClientCore> core, Batch batch) {
  // However this ends, its place among the Txns in flight goes to the entries waiting.
  struct Done {
    EntryBatcher& batcher;
    ~Done() {
      --batcher.in_flight_;
      if (!batcher.pending_.empty()) batcher.schedule();
    }
  } done{*self};
  batch = drop_abandoned(std::move(batch));  // stopped while waiting for this send
  if (batch.empty()) co_return;
  etcdserverpb::TxnRequest request;
  for (const auto& p : batch) {
    const auto& e = p->entry;
    auto* compare = request.add_compare();
    compare->set_result(etcdserverpb::Compare::EQUAL);
    compare->set_target(etcdserverpb::Compare::CREATE);
    compare->set_key(e.key);
    compare->set_create_revision(0);
    auto* put = request.add_success()->mutable_request_put();
    put->set_key(e.key);
    put->set_value(e.value);
    put->set_lease(e.lease);
    auto* line = request.add_success()->mutable_request_range();
    line->set_key(e.line_key);
    line->set_range_end(e.line_end);
    request.add_failure()->mutable_request_range()->set_key(e.key);
    auto* read = request.add_failure()->mutable_request_range();
    read->set_key(e.line_key);
    read->set_range_end(e.line_end);
  }
  etcdserverpb::TxnResponse reply;
  try {
    reply = co_await core->call_retrying("campaign", core->kv().async(),
                                         &etcdserverpb::KV::Stub::async::Txn, std::move(request));
  } catch (const system_error& e) {
    const bool split = batch.size() > 1 && (too_big(e.code(), e.what()) ||
                                            (!is_transient(e.code()) && !whole_batch(e.code(), batch)));
    if (split) {
      // Too big for this etcd: halves, and no more than that from now on. Refused for another
      // reason: halves too, until the refusal is down to the entry it is about.
      if (too_big(e.code(), e.what()))
        self->limit_ = std::max<std::size_t>(1, std::min(self->limit_, batch.size() / 2));
      const auto half = static_cast<std::ptrdiff_t>(batch.size() / 2);
      Batch first(batch.begin(), batch.begin() + half);
      Batch second(batch.begin() + half, batch.end());
      auto background = ClientCore::background(core, "campaign entries");
      self->in_flight_ += 2;
      asio::co_spawn(core->executor(), send(self, core, std::move(first)), background);
      asio::co_spawn(core->executor(), send(self, core, std::move(second)), std::move(background));
      co_return;
    }
    for (const auto& p : batch) {
      p->failure = std::current_exception();
      p->done.set();
    }
    co_return;
  }
  const auto revision = reply.header().revision();
  bool again = false;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& p = batch[i];
    const auto& own = reply.responses(static_cast<int>(2 * i)).response_range();
    const auto& line = reply.responses(static_cast<int>(2 * i + 1)).response_range();
    Result result{
        reply.succeeded(), revision, std::nullopt, {line.kvs().begin(), line.kvs().end()}};
    if (!reply.succeeded()) {
      if (own.kvs().empty()) {
        // Its own compare held: nothing was applied for it. With the next batch (an abandoned
        // one is answered: nothing of it is in etcd).
        if (p->abandoned)
          p->done.set();
        else
          self->pending_.push_front(p);
        again = true;
        continue;
      }
      result.existing = own.kvs(0);
    }
    // An abandoned entry's key, created or found, is its withdrawal's to delete: it has waited
    // for this answer (unanswered()).
    if (!p->abandoned) p->result = std::move(result);
    p->done.set();
  }
  if (again) self->schedule();  // (also when ~Done finds entries waiting)
}

}  // namespace election::detail
