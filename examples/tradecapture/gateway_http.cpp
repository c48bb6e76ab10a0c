// Beast's messages to the gateway's neutral request and back (serve, consume --metrics-listen).

#include "http_server.hpp"

#include <string_view>

namespace tradecapture::host {

namespace {

std::string str(boost::beast::string_view s) { return std::string(s.data(), s.size()); }

/// Every value of the field `name`, in order.
template <class Name>
std::vector<std::string> all_values(const HttpRequestHeader& h, Name name) {
  std::vector<std::string> out;
  auto [begin, end] = h.equal_range(name);
  for (auto it = begin; it != end; ++it) out.push_back(str(it->value()));
  return out;
}

}  // namespace

GatewayRequest to_gateway_request(const HttpRequestHeader& h) {
  GatewayRequest r;
  r.method = str(h.method_string());
  r.target = str(h.target());
  r.content_type = str(h[http::field::content_type]);
  r.content_encoding = all_values(h, http::field::content_encoding);
  r.authorization = str(h[http::field::authorization]);
  r.deadline_ms = all_values(h, boost::beast::string_view("X-Request-Deadline-Ms"));
  return r;
}

HttpResponse to_http_response(GatewayResponse response) {
  HttpResponse res{static_cast<http::status>(response.status), 11};
  res.set(http::field::content_type, response.content_type);
  for (const auto& [name, value] : response.headers) res.set(name, value);
  res.body() = std::move(response.body);
  return res;
}

}  // namespace tradecapture::host
