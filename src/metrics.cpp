#include <tradecapture/metrics.hpp>

#include <cmath>

namespace tradecapture {

std::uint64_t Histogram::Snapshot::quantile(double q) const noexcept {
  if (count == 0) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  // The smallest bucket whose cumulative count reaches ceil(q * count) (at least 1).
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count)));
  if (rank == 0) rank = 1;
  std::uint64_t seen = 0;
  for (int i = 0; i < buckets; ++i) {
    seen += counts[i];
    if (seen >= rank) return upper_bound(i);
  }
  return upper_bound(buckets - 1);
}

std::string_view to_string(RetryCause c) noexcept {
  switch (c) {
    case RetryCause::deadlock: return "deadlock";
    case RetryCause::serialization: return "serialization";
    case RetryCause::connection: return "connection";
    case RetryCause::fenced_off: return "fenced_off";
    case RetryCause::conflict: return "conflict";
    case RetryCause::busy: return "busy";
    case RetryCause::other: return "other";
  }
  return "other";
}

}  // namespace tradecapture
