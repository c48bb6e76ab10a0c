// The health endpoints of the hosts: the library gateway's answers as Beast responses.

#include "health.hpp"

#include <tradecapture/gateway.hpp>

namespace tradecapture::host {

HttpResponse health_live_response() { return to_http_response(health_live()); }

HttpResponse health_ready_response(TradeStore& store, PartitionLock* lock, bool draining) {
  return to_http_response(health_ready(store, lock, draining));
}

}  // namespace tradecapture::host
