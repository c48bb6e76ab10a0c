#pragma once
/// \file error.hpp
/// Errors as values: the `errc` enum, its error category and the `result<T>` alias.

#include <boost/outcome/result.hpp>
#include <boost/system/error_code.hpp>

#include <string>
#include <type_traits>

namespace tradecapture {

/// Every error the library reports. Grouped by what a caller can do about it (see `classify`).
enum class errc : int {
  // Never retry: the input itself is wrong.
  // Values are stable; 1, 20 and 21 (invalid_event, processor_error, retry_budget_exhausted)
  // were never produced and are retired: an invalid event or a throwing processor is an outcome
  // (REJECTED), and a spent retry budget reports the failure that persisted.
  decimal_syntax = 2,       ///< decimal text is not plain notation (digits, optional '.' digits)
  decimal_sign,             ///< decimal text has a sign
  decimal_exponent,         ///< decimal text has an exponent
  decimal_fraction_digits,  ///< decimal text has more fractional digits than allowed
  decimal_range,            ///< decimal text is larger than the supported range
  out_of_range,             ///< exact arithmetic would leave the supported range
  bad_uri,                  ///< a store or lock URI could not be understood
  // Retry the same call after a short backoff.
  store_unavailable,        ///< the store cannot be reached (connection refused or lost)
  store_busy,               ///< database busy, deadlock or serialization failure
  lock_unavailable,         ///< the lock service cannot be reached
  overloaded,               ///< the pipeline's in-flight limit is reached (fail-fast submit)
  // Retry at a higher level: re-acquire, reload and decide again.
  fenced_off,               ///< the store refused a write whose fencing token is stale
  lease_lost,               ///< the partition lease was lost before the write
  sequence_conflict,        ///< the partition sequence moved under us (another writer)
  key_conflict,             ///< an idempotency key was taken concurrently by another writer
  lock_busy,                ///< the partition is held by another holder
  // Terminal.
  store_error,              ///< the store failed in a way a retry will not fix
  stopped,                  ///< the pipeline is stopped or stopping
  internal = 22,            ///< a broken invariant inside the library
  // Added later (numbered after the above); retry the same call after a short backoff.
  deadlock,                 ///< the database chose this transaction as a deadlock victim
  serialization_failure,    ///< the database could not serialize this transaction
  // Added with the fault contract (spec section 6); terminal: the event has no outcome and
  // re-sending it (in order, with the rest of its partition) is safe.
  deadline_exceeded,        ///< the submission's deadline passed before it was decided (withdrawn)
  predecessor_failed,       ///< an earlier event of the same partition ended without an outcome
  // Added with source marks (`SourceHook`); only for events submitted with a source. Terminal,
  // and not failures: the event is not decided by this pipeline, by design.
  replayed,          ///< decided before (at or below its stream's mark): its outcome was reported
  source_abandoned,  ///< its source gave it up (lost its stream): the stream's next owner decides it
};

/// What a caller should do about an error.
enum class retry_class {
  none,          ///< give up: retrying the same input gives the same answer
  retry_now,     ///< transient: retry the same call after a backoff
  retry_higher,  ///< re-acquire the partition / reload state, then decide again
};

/// The error category of tradecapture's core ("tradecapture").
const boost::system::error_category& error_category() noexcept;

/// Makes an error code from an `errc` value (found by ADL).
inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Classifies an error code of this library's category; other categories are `none`.
retry_class classify(const boost::system::error_code& ec) noexcept;

/// The library's result type: a value or a `boost::system::error_code`.
template <class T>
using result = boost::outcome_v2::result<T, boost::system::error_code>;

}  // namespace tradecapture

namespace boost::system {
template <>
struct is_error_code_enum<tradecapture::errc> : std::true_type {};
}  // namespace boost::system
