// The in-process PartitionLock: real mutual exclusion between holders in one process, with
// leases and a per-partition grant counter (Grant::fence), so code written against it behaves as
// with the Redis lock. The counter starts again at 1 in a new process (a lock that forgets, as
// spec section 6 point 4 allows): the write token comes from TradeStore::claim_partitions.

#include <tradecapture/detail/open_table.hpp>
#include <tradecapture/memory.hpp>

#include <atomic>
#include <deque>
#include <mutex>

namespace tradecapture {
namespace {

using Clock = std::chrono::steady_clock;

class LocalLock final : public PartitionLock {
 public:
  explicit LocalLock(std::chrono::milliseconds lease) : lease_(lease) {}

  result<std::vector<result<Grant>>> try_acquire(
      std::span<const PartitionKey> partitions) override {
    std::vector<result<Grant>> out;
    out.reserve(partitions.size());
    const auto now = Clock::now();
    std::lock_guard lk(mu_);
    for (const auto& key : partitions) {
      auto& h = holder_for(key);
      if (!h.token.empty() && h.expires > now) {
        out.emplace_back(errc::lock_busy);
        continue;
      }
      // A plain counter per partition, for logs and diagnostics: the writer's fencing token is
      // issued by the store (TradeStore::claim_partitions), so no clock is involved here.
      ++h.fence;
      h.token = std::to_string(++grants_) + "@local";
      h.expires = now + lease_;
      out.emplace_back(Grant{key, h.fence, h.token, h.expires});
    }
    return out;
  }

  result<std::vector<result<void>>> renew(std::span<Grant> grants) override {
    std::vector<result<void>> out;
    out.reserve(grants.size());
    const auto now = Clock::now();
    std::lock_guard lk(mu_);
    for (auto& g : grants) {
      Holder* h = find(g.partition);
      if (h == nullptr || h->token != g.token || h->expires <= now) {
        out.emplace_back(errc::lease_lost);
        continue;
      }
      h->expires = g.expires = now + lease_;
      out.emplace_back(outcome_v2_success());
    }
    return out;
  }

  void release(std::span<const Grant> grants) override {
    std::lock_guard lk(mu_);
    for (const auto& g : grants) {
      Holder* h = find(g.partition);
      if (h != nullptr && h->token == g.token) h->token.clear();
    }
  }

  std::chrono::milliseconds lease() const override { return lease_; }
  result<void> ping() override { return boost::outcome_v2::success(); }
  std::string describe() const override { return "local:"; }

 private:
  static boost::outcome_v2::success_type<void> outcome_v2_success() {
    return boost::outcome_v2::success();
  }
  struct Holder {
    std::string token;  // empty when free
    std::uint64_t fence = 0;
    Clock::time_point expires;
  };
  /// A partition's holder; partitions are never forgotten (their grant counter goes on).
  struct Held {
    PartitionKey key;
    Holder holder;
  };
  /// An entry of held_: a partition's PartitionKeyHash and its Held (free: none). Kept with the
  /// hash, so a probe compares hashes and never hashes a key it passes again.
  using HeldRef = detail::HashedRef<Held>;

  /// The holder of `key`, or null. Under mu_.
  Holder* find(const PartitionKey& key) {
    const std::size_t hash = PartitionKeyHash{}(key);
    HeldRef* r =
        held_.find(hash, [&](const HeldRef& e) { return e.hash == hash && e.ref->key == key; });
    return r != nullptr ? &r->ref->holder : nullptr;
  }
  /// The holder of `key`, a free one added if there was none. Under mu_.
  Holder& holder_for(const PartitionKey& key) {
    const std::size_t hash = PartitionKeyHash{}(key);
    const auto match = [&](const HeldRef& e) { return e.hash == hash && e.ref->key == key; };
    const auto make = [&] {
      holders_.push_back(Held{key, Holder{}});
      return HeldRef{hash, &holders_.back()};
    };
    return held_.find_or_insert(hash, match, make).first->ref->holder;
  }

  const std::chrono::milliseconds lease_;
  std::mutex mu_;
  std::deque<Held> holders_;  // never moved (held_ points into it)
  detail::RefTable<Held> held_;
  std::uint64_t grants_ = 0;
};

}  // namespace

std::shared_ptr<PartitionLock> make_local_lock(std::chrono::milliseconds lease) {
  return std::make_shared<LocalLock>(lease);
}

}  // namespace tradecapture
