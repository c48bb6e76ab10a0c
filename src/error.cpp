#include <tradecapture/error.hpp>

namespace tradecapture {
namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "tradecapture"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::decimal_syntax: return "not a plain decimal";
      case errc::decimal_sign: return "sign not allowed";
      case errc::decimal_exponent: return "exponent not allowed";
      case errc::decimal_fraction_digits: return "too many fractional digits";
      case errc::decimal_range: return "decimal too large";
      case errc::out_of_range: return "out of range";
      case errc::bad_uri: return "bad URI";
      case errc::store_unavailable: return "store unavailable";
      case errc::store_busy: return "store busy (deadlock, serialization failure or lock timeout)";
      case errc::lock_unavailable: return "lock service unavailable";
      case errc::overloaded: return "overloaded: in-flight limit reached";
      case errc::fenced_off: return "fenced off: a newer lease holder wrote this partition";
      case errc::lease_lost: return "partition lease lost";
      case errc::sequence_conflict: return "partition sequence moved (concurrent writer)";
      case errc::key_conflict: return "idempotency key taken concurrently";
      case errc::lock_busy: return "partition held by another holder";
      case errc::store_error: return "store error";
      case errc::stopped: return "pipeline stopped";
      case errc::internal: return "internal error";
      case errc::deadlock: return "deadlock detected (transaction rolled back)";
      case errc::serialization_failure: return "serialization failure (transaction rolled back)";
      case errc::deadline_exceeded: return "deadline passed before the event was decided (withdrawn)";
      case errc::predecessor_failed:
        return "an earlier event of the partition ended without an outcome";
      case errc::replayed:
        return "replayed: decided before (at or below its source's mark in the partition)";
      case errc::source_abandoned:
        return "abandoned: its source no longer owns the stream it came from";
    }
    return "unknown tradecapture error";
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

retry_class classify(const boost::system::error_code& ec) noexcept {
  if (!ec || ec.category() != error_category()) return retry_class::none;
  switch (static_cast<errc>(ec.value())) {
    case errc::store_unavailable:
    case errc::store_busy:
    case errc::deadlock:
    case errc::serialization_failure:
    case errc::lock_unavailable:
    case errc::overloaded:
      return retry_class::retry_now;
    case errc::fenced_off:
    case errc::lease_lost:
    case errc::sequence_conflict:
    case errc::key_conflict:
    case errc::lock_busy:
      return retry_class::retry_higher;
    default:
      return retry_class::none;
  }
}

}  // namespace tradecapture
