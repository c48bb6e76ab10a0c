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
#include <tradecapture/detail/log_limiter.hpp>

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
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
  std::string user;  // empty: the default user
  std::string password;
  int db = 0;
  /// "host:port" ("[::1]:port" for IPv6), for messages.
  std::string address() const {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }
};

/// Decodes %XX escapes; false for a malformed escape.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int value = 0;
    auto [p, e] = std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
    if (e != std::errc() || p != in.data() + i + 3) return false;
    out += static_cast<char>(value);
    i += 2;
  }
  return true;
}

/// Parses a lock URI; on failure `why` says what is wrong (never the password).
result<Endpoint> parse_uri(const std::string& uri, std::string& why) {
  constexpr std::string_view scheme = "redis://";
  if (uri.rfind("rediss://", 0) == 0) {
    why = "rediss:// (Redis over TLS) is not supported: TLS is not supported in this build "
          "(hiredis without SSL); use redis:// on a trusted network or a TLS tunnel";
    return errc::bad_uri;
  }
  if (uri.rfind(scheme, 0) != 0) {
    why = "the URI does not start with redis://";
    return errc::bad_uri;
  }
  std::string_view rest(uri);
  rest.remove_prefix(scheme.size());
  Endpoint ep;
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = rest.substr(0, at);
    const auto colon = auth.find(':');
    if (colon == std::string_view::npos) {
      why = "user information without a password (expected [user]:password@)";
      return errc::bad_uri;
    }
    if (!percent_decode(auth.substr(0, colon), ep.user) ||
        !percent_decode(auth.substr(colon + 1), ep.password)) {
      why = "a malformed %-escape in the user or password";
      return errc::bad_uri;
    }
    if (ep.password.empty()) {
      why = "an empty password (expected [user]:password@)";
      return errc::bad_uri;
    }
    rest.remove_prefix(at + 1);
  }
  std::string_view hostport = rest;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      auto [p, e] = std::from_chars(db.data(), db.data() + db.size(), ep.db);
      if (e != std::errc() || p != db.data() + db.size() || ep.db < 0) {
        why = "the database after '/' is not a number";
        return errc::bad_uri;
      }
    }
  }
  std::string_view port;
  bool has_port = false;
  if (!hostport.empty() && hostport.front() == '[') {
    const auto close = hostport.find(']');
    if (close == std::string_view::npos) {
      why = "an IPv6 address without its closing ']'";
      return errc::bad_uri;
    }
    ep.host = std::string(hostport.substr(1, close - 1));
    std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        why = "text after the IPv6 address";
        return errc::bad_uri;
      }
      port = after.substr(1);
      has_port = true;
    }
  } else if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
    ep.host = std::string(hostport.substr(0, colon));
    port = hostport.substr(colon + 1);
    has_port = true;
  } else {
    ep.host = std::string(hostport);
  }
  if (has_port) {
    auto [p, e] = std::from_chars(port.data(), port.data() + port.size(), ep.port);
    if (e != std::errc() || p != port.data() + port.size() || ep.port <= 0 || ep.port > 65535) {
      why = "the port is not a number from 1 to 65535";
      return errc::bad_uri;
    }
  }
  if (ep.host.empty()) {
    why = "no host";
    return errc::bad_uri;
  }
  return ep;
}

/// True when the socket is connected to itself: connecting to a local port nobody listens on can
/// pick that very port as the ephemeral source port (TCP simultaneous open), and the socket would
/// then hold the port a restarted Redis needs.
bool self_connected(int fd) {
  sockaddr_storage local{}, peer{};
  socklen_t ll = sizeof local, pl = sizeof peer;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) return false;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) return false;
  return ll == pl && std::memcmp(&local, &peer, ll) == 0;
}

/// hiredis' error text, with its timeout spelled out.
std::string context_error(const redisContext* c, std::chrono::milliseconds timeout) {
  if (c == nullptr) return "out of memory";
  std::string e = c->errstr[0] != '\0' ? std::string(c->errstr) : "error " + std::to_string(c->err);
  if (e.find("Resource temporarily unavailable") != std::string::npos ||
      e.find("timed out") != std::string::npos) {
    e = "no answer within " + std::to_string(timeout.count()) + " ms (" + e + ")";
  }
  if (c->err == REDIS_ERR_EOF) e = "connection closed by the server (" + e + ")";
  return e;
}

timeval to_timeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

class RedisLock final : public PartitionLock {
 public:
  RedisLock(Endpoint ep, RedisLockOptions opt)
      : ep_(std::move(ep)),
        opt_(std::move(opt)),
        faults_(opt_.logger, "Redis " + ep_.address()) {
    std::random_device rd;
    nonce_ = std::to_string(rd()) + std::to_string(rd());
    rng_.seed(rd());
    if (opt_.instance_id.empty()) opt_.instance_id = "host";
    opt_.reconnect_backoff_min = std::max(opt_.reconnect_backoff_min, std::chrono::milliseconds(1));
    opt_.reconnect_backoff_max = std::max(opt_.reconnect_backoff_max, opt_.reconnect_backoff_min);
  }

  result<void> connect() {
    std::unique_lock lk(mu_);
    return ensure_connected_(lk);
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
    return "redis://" + ep_.address() + "/" + std::to_string(ep_.db);
  }

  /// Round trips so far (for the benchmarks' round-trips-per-trade figure).
  std::uint64_t round_trips() const { return round_trips_.load(); }

 private:
  using Context = std::unique_ptr<redisContext, ContextDeleter>;

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

  /// One failure: logged (bounded) with its reason, and the call fails.
  errc fail_(std::string_view reason) {
    faults_.failure("unavailable", reason);
    return errc::lock_unavailable;
  }

  /// Drops the connection (closes its socket at once) after an I/O failure or a reply that
  /// says the session is unusable; the next call reconnects.
  errc drop_(std::string reason) {
    ctx_.reset();
    last_error_ = reason;
    return fail_(reason);
  }

  /// Holding `lk`: connects unless connected. Never more than one connect attempt at a time,
  /// and none before the backoff after a failed one allows: meanwhile calls fail at once.
  result<void> ensure_connected_(std::unique_lock<std::mutex>& lk) {
    if (ctx_) return boost::outcome_v2::success();
    const auto now = Clock::now();
    if (connecting_ || now < next_connect_) {
      return fail_(last_error_ + " (reconnecting with backoff)");
    }
    connecting_ = true;
    lk.unlock();
    std::string why;
    Context c = open_connection_(why);
    lk.lock();
    connecting_ = false;
    if (!c) {
      ++connect_failures_;
      std::chrono::milliseconds delay = std::min<std::chrono::milliseconds>(
          opt_.reconnect_backoff_min * (1LL << std::min(connect_failures_ - 1, 20)),
          opt_.reconnect_backoff_max);
      // +-20 % jitter: several hosts do not reconnect in step.
      std::uniform_real_distribution<double> jitter(0.8, 1.2);
      next_connect_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                         delay * jitter(rng_));
      last_error_ = why;
      return fail_(why);
    }
    connect_failures_ = 0;
    next_connect_ = {};
    ctx_ = std::move(c);
    if (sha_acquire_.empty()) {
      // Set once, by the first connect (before open_redis_lock hands the lock out), and read
      // without the mutex by the calls that build commands. A script's SHA1 never changes.
      sha_acquire_ = std::move(pending_sha_[0]);
      sha_renew_ = std::move(pending_sha_[1]);
      sha_release_ = std::move(pending_sha_[2]);
    }
    return boost::outcome_v2::success();
  }

  /// Opens, authenticates and prepares a connection (without holding mu_); null with `why` on
  /// failure, the socket then closed.
  Context open_connection_(std::string& why) {
    const timeval tv = to_timeval(opt_.io_timeout);
    Context c(redisConnectWithTimeout(ep_.host.c_str(), ep_.port, tv));
    if (!c || c->err) {
      why = "cannot connect: " + context_error(c.get(), opt_.io_timeout);
      return nullptr;
    }
    if (self_connected(c->fd)) {
      why = "cannot connect: Connection refused (nothing listens on the port)";
      return nullptr;
    }
    redisSetTimeout(c.get(), tv);
    auto command = [&](std::vector<std::string> args, std::string_view what,
                       int expected) -> Reply {
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      Reply r(static_cast<redisReply*>(
          redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
      if (!r) {
        why = std::string(what) + " failed: " + context_error(c.get(), opt_.io_timeout);
      } else if (r->type == REDIS_REPLY_ERROR) {
        why = std::string(what) + " refused: " + std::string(r->str, r->len);
        if (std::string_view(r->str, r->len).rfind("NOAUTH", 0) == 0)
          why += " (the lock URI has no password: redis://[user]:password@host:port)";
        r.reset();
      } else if (expected >= 0 && r->type != expected) {
        why = std::string(what) + ": unexpected reply type " + std::to_string(r->type);
        r.reset();
      }
      return r;
    };
    if (!ep_.password.empty()) {
      std::vector<std::string> auth{"AUTH"};
      if (!ep_.user.empty()) auth.push_back(ep_.user);
      auth.push_back(ep_.password);
      const std::string what =
          ep_.user.empty() ? std::string("AUTH") : "AUTH as user '" + ep_.user + "'";
      if (!command(std::move(auth), what, -1)) return nullptr;
    }
    if (ep_.db != 0) {
      if (!command({"SELECT", std::to_string(ep_.db)}, "SELECT " + std::to_string(ep_.db), -1))
        return nullptr;
    }
    int i = 0;
    for (const char* script : {kAcquire, kRenew, kRelease}) {
      Reply r = command({"SCRIPT", "LOAD", script}, "SCRIPT LOAD", REDIS_REPLY_STRING);
      if (!r) return nullptr;
      pending_sha_[i++] = std::string(r->str, r->len);
    }
    return c;
  }

  /// Sends every command, then reads every reply: one network round trip. Any I/O error drops
  /// the connection (the next call reconnects) and fails the whole call.
  result<std::vector<Reply>> round_trip_(const std::vector<std::vector<std::string>>& cmds) {
    std::unique_lock lk(mu_);
    if (auto c = ensure_connected_(lk); !c) return c.error();
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
        return drop_("connection lost: " + context_error(ctx_.get(), opt_.io_timeout));
      }
    }
    ++round_trips_;
    std::vector<Reply> out;
    out.reserve(cmds.size());
    std::string_view unusable;  // a reply saying the session cannot go on
    std::string error_reply;    // the first other error reply
    for (std::size_t i = 0; i < cmds.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || raw == nullptr) {
        return drop_("connection lost: " + context_error(ctx_.get(), opt_.io_timeout));
      }
      Reply r(static_cast<redisReply*>(raw));
      if (r->type == REDIS_REPLY_ERROR) {
        const std::string_view text(r->str, r->len);
        if (unusable.empty() && (text.rfind("NOSCRIPT", 0) == 0 || text.rfind("NOAUTH", 0) == 0))
          unusable = text.substr(0, text.find(' '));
        if (error_reply.empty()) error_reply = std::string(text);
      }
      out.push_back(std::move(r));
    }
    if (!unusable.empty()) {
      // Redis restarted under us: it lost its script cache (NOSCRIPT) or now wants a password
      // (NOAUTH). Reconnect (authenticates and reloads the scripts).
      return drop_("Redis answered " + error_reply + " (it restarted?): reconnecting");
    }
    if (!error_reply.empty()) {
      // E.g. LOADING, OOM, READONLY: the commands concerned fail, the connection stays.
      fail_(cmds.front().front() + " answered: " + error_reply);
    } else {
      faults_.success();
    }
    return out;
  }

  Endpoint ep_;
  RedisLockOptions opt_;
  detail::FaultLog faults_;
  std::string nonce_;
  std::atomic<std::uint64_t> grants_{0};
  std::atomic<std::uint64_t> round_trips_{0};
  std::mutex mu_;  // the connection and everything below
  Context ctx_;
  std::string sha_acquire_, sha_renew_, sha_release_;
  std::string pending_sha_[3];  // of the connection being opened
  bool connecting_ = false;
  int connect_failures_ = 0;    // failed connect attempts in a row
  Clock::time_point next_connect_{};
  std::string last_error_ = "not connected";
  std::mt19937_64 rng_;
};

}  // namespace

result<std::shared_ptr<PartitionLock>> open_redis_lock(const std::string& uri,
                                                       const RedisLockOptions& options) {
  std::string why;
  auto ep = parse_uri(uri, why);
  if (!ep) {
    auto log = options.logger ? options.logger : spdlog::default_logger();
    // The scheme only: the rest may hold a password.
    log->error("tradecapture: bad lock URI ({}...): {}", uri.substr(0, uri.find("://") + 3), why);
    return ep.error();
  }
  auto lock = std::make_shared<RedisLock>(std::move(ep).value(), options);
  if (auto c = lock->connect(); !c) return c.error();
  return std::shared_ptr<PartitionLock>(std::move(lock));
}

}  // namespace tradecapture
