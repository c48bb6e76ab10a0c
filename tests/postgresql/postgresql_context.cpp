// Holds the PostgreSQL store (a fresh database on the test process's throwaway server) to the
// shared TradeStore suite (tests/common).

#include "common/store_conformance.hpp"

namespace {
const tctest::RegisterStore postgresql_store{"postgresql",
                                             [] { return tctest::make_postgres_store(); }, 2};
}  // namespace
