// `tradecapture positions` and `tradecapture events`: read a store, print JSON lines.

#include "host.hpp"

#include <tradecapture/event_codec.hpp>

#include <optional>

namespace tradecapture::host {

int run_positions(const std::string& store_uri) {
  auto store = open_store(store_uri, {.concurrency = 1, .must_exist = true});
  auto rows = store->positions();
  if (!rows)
    throw HostError("cannot read positions from " + store_uri + ": " + rows.error().message());
  Output out;
  for (const PositionRow& row : rows.value()) {
    append_position_json(out.buffer(), row);
    out.maybe_flush();
  }
  out.flush();
  return 0;
}

int run_events(const std::string& store_uri) {
  auto store = open_store(store_uri, {.concurrency = 1, .must_exist = true});
  Output out;
  std::optional<HostError> write_error;  // never let an exception cross the store's scan
  auto scanned = store->scan_events([&](const StoredEvent& e) {
    append_event_json(out.buffer(), e);
    try {
      out.maybe_flush();
    } catch (const HostError& err) {
      write_error = err;
      return false;
    }
    return true;
  });
  if (write_error) throw *write_error;
  if (!scanned)
    throw HostError("cannot read events from " + store_uri + ": " + scanned.error().message());
  out.flush();
  return 0;
}

}  // namespace tradecapture::host
