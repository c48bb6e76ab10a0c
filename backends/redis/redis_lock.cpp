// The Redis PartitionLock.
//
// Keys: <prefix>lock:<partition.encode()> holds the grant token with a PX expiry, and
// <prefix>fence:<partition.encode()> the partition's fencing counter.
//
// Grant::fence comes from Redis, at grant time, inside the same script as the SET NX PX: an INCR
// of the partition's fence counter, so it strictly increases grant after grant while Redis keeps
// its data. It is informational (logs, diagnostics): after Redis loses its data (a restart
// without persistence, a failover) the counter starts again at 1, and that is fine, because the
// writer's fencing token is issued by the store (TradeStore::claim_partitions), never by the
// lock and never by a clock (spec section 6, points 3 and 4).
//
// Round trips: try_acquire, renew and release each send all their keys in one pipelined round
// trip (hiredis append + read), whatever the number of partitions.

#include <tradecapture/redis_lock.hpp>

#include <hiredis/hiredis.h>

#include <atomic>
#include <charconv>
#include <mutex>
#include <random>

namespace tradecapture {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kAcquire = R"lua(
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
)lua";

constexpr const char* kRenew = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
)lua";

constexpr const char* kRelease = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
)lua";

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};

struct Endpoint {
  std::string host;
  int port = 6379;
  std::string password;
  int db = 0;
};

result<Endpoint> parse_uri(const std::string& uri) {
  constexpr std::string_view scheme = "redis://";
  if (uri.rfind(scheme, 0) != 0) return errc::bad_uri;
  std::string_view rest(uri);
  rest.remove_prefix(scheme.size());
  Endpoint ep;
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = rest.substr(0, at);
    if (auth.empty() || auth[0] != ':') return errc::bad_uri;  // only ":password@" is supported
    ep.password = std::string(auth.substr(1));
    rest.remove_prefix(at + 1);
  }
  std::string_view hostport = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      auto [p, e] = std::from_chars(db.data(), db.data() + db.size(), ep.db);
      if (e != std::errc() || p != db.data() + db.size() || ep.db < 0) return errc::bad_uri;
    }
  }
  auto colon = hostport.rfind(':');
  if (colon == std::string_view::npos) {
    ep.host = std::string(hostport);
  } else {
    ep.host = std::string(hostport.substr(0, colon));
    std::string_view port = hostport.substr(colon + 1);
    auto [p, e] = std::from_chars(port.data(), port.data() + port.size(), ep.port);
    if (e != std::errc() || p != port.data() + port.size() || ep.port <= 0 || ep.port > 65535)
      return errc::bad_uri;
  }
  if (ep.host.empty()) return errc::bad_uri;
  return ep;
}

timeval to_timeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

class RedisLock final : public PartitionLock {
 public:
  RedisLock(Endpoint ep, RedisLockOptions opt) : ep_(std::move(ep)), opt_(std::move(opt)) {
    std::random_device rd;
    nonce_ = std::to_string(rd()) + std::to_string(rd());
    if (opt_.instance_id.empty()) opt_.instance_id = "host";
  }

  result<void> connect() {
    std::lock_guard lk(mu_);
    return ensure_connected_();
  }

  result<std::vector<result<Grant>>> try_acquire(
      std::span<const PartitionKey> partitions) override {
    std::vector<std::string> tokens;
    std::vector<std::vector<std::string>> cmds;
    tokens.reserve(partitions.size());
    for (const auto& k : partitions) {
      tokens.push_back(opt_.instance_id + ":" + nonce_ + ":" + std::to_string(++grants_));
      cmds.push_back({"EVALSHA", sha_acquire_, "2", lock_key_(k), fence_key_(k), tokens.back(),
                      std::to_string(opt_.lease.count())});
    }
    const auto sent = Clock::now();
    auto replies = round_trip_(cmds);
    if (!replies) return replies.error();
    std::vector<result<Grant>> out;
    out.reserve(partitions.size());
    for (std::size_t i = 0; i < partitions.size(); ++i) {
      redisReply* r = replies.value()[i].get();
      if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        out.emplace_back(Grant{partitions[i], static_cast<std::uint64_t>(r->integer), tokens[i],
                               expiry_(sent)});
      } else if (r->type == REDIS_REPLY_INTEGER) {
        out.emplace_back(errc::lock_busy);
      } else {
        out.emplace_back(errc::lock_unavailable);
      }
    }
    return out;
  }

  result<std::vector<result<void>>> renew(std::span<Grant> grants) override {
    std::vector<std::vector<std::string>> cmds;
    for (const auto& g : grants)
      cmds.push_back({"EVALSHA", sha_renew_, "1", lock_key_(g.partition), g.token,
                      std::to_string(opt_.lease.count())});
    const auto sent = Clock::now();
    auto replies = round_trip_(cmds);
    if (!replies) return replies.error();
    std::vector<result<void>> out;
    for (std::size_t i = 0; i < grants.size(); ++i) {
      redisReply* r = replies.value()[i].get();
      if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        grants[i].expires = expiry_(sent);
        out.emplace_back(boost::outcome_v2::success());
      } else {
        out.emplace_back(errc::lease_lost);
      }
    }
    return out;
  }

  void release(std::span<const Grant> grants) override {
    std::vector<std::vector<std::string>> cmds;
    for (const auto& g : grants)
      cmds.push_back({"EVALSHA", sha_release_, "1", lock_key_(g.partition), g.token});
    (void)round_trip_(cmds);  // best effort: a lease we fail to release expires by itself
  }

  std::chrono::milliseconds lease() const override { return opt_.lease; }

  result<void> ping() override {
    auto r = round_trip_({{"PING"}});
    if (!r) return r.error();
    return boost::outcome_v2::success();
  }

  std::string describe() const override {
    return "redis://" + ep_.host + ":" + std::to_string(ep_.port) + "/" + std::to_string(ep_.db);
  }

  /// Round trips so far (for the benchmarks' round-trips-per-trade figure).
  std::uint64_t round_trips() const { return round_trips_.load(); }

 private:
  // The holder must stop writing before Redis lets the key go: count the lease from the moment
  // the command was sent, less a margin for clock-rate differences.
  Clock::time_point expiry_(Clock::time_point sent) const {
    return sent + opt_.lease - opt_.lease / 10;
  }
  std::string lock_key_(const PartitionKey& k) const {
    return opt_.key_prefix + "lock:" + k.encode();
  }
  std::string fence_key_(const PartitionKey& k) const {
    return opt_.key_prefix + "fence:" + k.encode();
  }

  result<void> ensure_connected_() {
    if (ctx_) return boost::outcome_v2::success();
    const timeval tv = to_timeval(opt_.io_timeout);
    std::unique_ptr<redisContext, ContextDeleter> c(
        redisConnectWithTimeout(ep_.host.c_str(), ep_.port, tv));
    if (!c || c->err) return errc::lock_unavailable;
    redisSetTimeout(c.get(), tv);
    auto command = [&](std::vector<std::string> args) -> Reply {
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      return Reply(static_cast<redisReply*>(
          redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
    };
    if (!ep_.password.empty()) {
      Reply r = command({"AUTH", ep_.password});
      if (!r || r->type == REDIS_REPLY_ERROR) return errc::lock_unavailable;
    }
    if (ep_.db != 0) {
      Reply r = command({"SELECT", std::to_string(ep_.db)});
      if (!r || r->type == REDIS_REPLY_ERROR) return errc::lock_unavailable;
    }
    for (auto [script, sha] : {std::pair{kAcquire, &sha_acquire_}, std::pair{kRenew, &sha_renew_},
                               std::pair{kRelease, &sha_release_}}) {
      Reply r = command({"SCRIPT", "LOAD", script});
      if (!r || r->type != REDIS_REPLY_STRING) return errc::lock_unavailable;
      *sha = std::string(r->str, r->len);
    }
    ctx_ = std::move(c);
    return boost::outcome_v2::success();
  }

  /// Sends every command, then reads every reply: one network round trip. Any I/O error drops
  /// the connection (the next call reconnects) and fails the whole call.
  result<std::vector<Reply>> round_trip_(const std::vector<std::vector<std::string>>& cmds) {
    std::lock_guard lk(mu_);
    if (auto c = ensure_connected_(); !c) return c.error();
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& cmd : cmds) {
      argv.clear();
      lens.clear();
      for (const auto& a : cmd) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(argv.size()), argv.data(),
                                 lens.data()) != REDIS_OK) {
        ctx_.reset();
        return errc::lock_unavailable;
      }
    }
    ++round_trips_;
    std::vector<Reply> out;
    out.reserve(cmds.size());
    bool noscript = false;
    for (std::size_t i = 0; i < cmds.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || raw == nullptr) {
        ctx_.reset();
        return errc::lock_unavailable;
      }
      Reply r(static_cast<redisReply*>(raw));
      if (r->type == REDIS_REPLY_ERROR && std::string_view(r->str, r->len).rfind("NOSCRIPT", 0) == 0)
        noscript = true;
      out.push_back(std::move(r));
    }
    if (noscript) {
      // Redis restarted under us and lost its script cache: reconnect (reloads the scripts).
      ctx_.reset();
      return errc::lock_unavailable;
    }
    return out;
  }

  Endpoint ep_;
  RedisLockOptions opt_;
  std::string nonce_;
  std::atomic<std::uint64_t> grants_{0};
  std::atomic<std::uint64_t> round_trips_{0};
  std::mutex mu_;
  std::unique_ptr<redisContext, ContextDeleter> ctx_;
  std::string sha_acquire_, sha_renew_, sha_release_;
};

}  // namespace

result<std::shared_ptr<PartitionLock>> open_redis_lock(const std::string& uri,
                                                       const RedisLockOptions& options) {
  auto ep = parse_uri(uri);
  if (!ep) return ep.error();
  auto lock = std::make_shared<RedisLock>(std::move(ep).value(), options);
  if (auto c = lock->connect(); !c) return c.error();
  return std::shared_ptr<PartitionLock>(std::move(lock));
}

}  // namespace tradecapture
