// The health endpoints of the hosts.

#include "health.hpp"

#include <tradecapture/event_codec.hpp>

#include <string>

namespace tradecapture::host {

HttpResponse health_live_response() {
  return make_json_response(http::status::ok, "{\"status\": \"live\"}\n");
}

HttpResponse health_ready_response(TradeStore& store, PartitionLock* lock, bool draining) {
  if (draining)
    return make_json_response(http::status::service_unavailable, "{\"status\": \"draining\"}\n");
  auto s = store.ping();
  auto l = lock != nullptr ? lock->ping() : result<void>(boost::outcome_v2::success());
  if (s && l) return make_json_response(http::status::ok, "{\"status\": \"ready\"}\n");
  std::string body = "{\"status\": \"unavailable\", \"store\": ";
  append_json_string(body, s ? std::string("ok") : s.error().message());
  if (lock != nullptr) {
    body += ", \"lock\": ";
    append_json_string(body, l ? std::string("ok") : l.error().message());
  }
  body += "}\n";
  HttpResponse res = make_json_response(http::status::service_unavailable, std::move(body));
  res.set(http::field::retry_after, "1");
  return res;
}

}  // namespace tradecapture::host
