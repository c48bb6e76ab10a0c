// Holds the SQLite store to the shared TradeStore suite (tests/common).

#include "common/store_conformance.hpp"

namespace {
const tctest::RegisterStore sqlite_store{"sqlite", [] { return tctest::make_sqlite_store(); }, 1};
}  // namespace
