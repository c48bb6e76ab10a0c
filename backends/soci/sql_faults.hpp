#pragma once
// Private to the SOCI backend (and its tests): what a database failure means to the store, and
// the PostgreSQL SQLSTATE classification, kept as pure functions so that a table test can hold
// every SQLSTATE class to a deliberate answer (tests/postgresql/test_postgresql_store.cpp).

#include <tradecapture/error.hpp>

#include <string>
#include <string_view>

namespace tradecapture::detail::sql {

/// What a database failure means to the store.
enum class Fault {
  busy,              ///< lock timeout, busy database: retry the same call
  deadlock,          ///< chosen as a deadlock victim: retry the same call
  serialization,     ///< serialization failure: retry the same call
  unavailable,       ///< cannot open or reach the database, I/O failure: reconnect, retry later
  unique_violation,  ///< a UNIQUE or PRIMARY KEY constraint refused a row
  other,             ///< anything else: a retry will not fix it
};

/// A database failure as a dialect reads it.
struct Classified {
  Fault fault = Fault::other;
  std::string native;  ///< the database's own code ("SQLITE_BUSY (5)", "SQLSTATE 40001")
};

/// The `errc` a fault is reported as; `on_unique` is what a unique-key violation means where it
/// happened (`errc::key_conflict` while inserting events, else `errc::store_error`).
inline errc fault_errc(Fault fault, errc on_unique) noexcept {
  switch (fault) {
    case Fault::busy:
      return errc::store_busy;
    case Fault::deadlock:
      return errc::deadlock;
    case Fault::serialization:
      return errc::serialization_failure;
    case Fault::unavailable:
      return errc::store_unavailable;
    case Fault::unique_violation:
      return on_unique;
    case Fault::other:
      return errc::store_error;
  }
  return errc::store_error;
}

/// Classifies a PostgreSQL SQLSTATE (five characters; "" when libpq gave none, which the caller
/// decides from the message). Every class has a deliberate answer; what is not listed is `other`
/// (a retry will not fix it: a bug, a schema or permission problem, bad data).
///
/// - unavailable (reconnect, retry later): 08xxx connection exception (SOCI reports a session
///   that died under a statement as 08000); 25P03 idle_in_transaction_session_timeout and
///   57P05 idle_session_timeout (the server closed the session); 57P01 admin shutdown, 57P02
///   crash shutdown, 57P03 cannot connect now (starting up); 53xxx insufficient resources (disk
///   full, out of memory, too many connections); 58030 I/O error on the server; 40003
///   statement completion unknown (as with a lost connection: only a look-up can tell).
/// - busy (retry the same call): 55P03 lock_not_available (lock_timeout), 57014 query_canceled
///   (statement_timeout).
/// - serialization: 40001. deadlock: 40P01.
/// - unique_violation: 23505 (what it means depends on the statement: see `fault_errc`).
/// - other: the rest of 23 (foreign key, check, not null, exclusion), 25 (invalid transaction
///   state: a bug), 40 (40000, 40002), 55 (object not in prerequisite state), 57 (57000
///   operator intervention, 57P04 database dropped), 58 (missing or duplicate file), and every
///   other class: 0A, 22, 28, 3D, 3F, 42, F0, HV, P0, XX, ...
inline Fault classify_sqlstate(std::string_view state) noexcept {
  const std::string_view cls = state.substr(0, 2);
  if (cls == "08" || cls == "53") return Fault::unavailable;
  if (state == "25P03" || state == "57P01" || state == "57P02" || state == "57P03" ||
      state == "57P05" || state == "58030" || state == "40003") {
    return Fault::unavailable;
  }
  if (state == "40001") return Fault::serialization;
  if (state == "40P01") return Fault::deadlock;
  if (state == "55P03" || state == "57014") return Fault::busy;
  if (state == "23505") return Fault::unique_violation;
  return Fault::other;
}

}  // namespace tradecapture::detail::sql
