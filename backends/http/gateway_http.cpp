// Beast's messages to the gateway's neutral request and back (`tradecapture serve`, `consume
// --metrics-listen`, and any host that embeds the Gateway behind HttpServer).

#include <tradecapture/gateway_http.hpp>

#include <boost/beast/core/string.hpp>

#include <string>
#include <utility>
#include <vector>

namespace tradecapture::http {
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
  r.content_type = str(h[beast_http::field::content_type]);
  r.content_encoding = all_values(h, beast_http::field::content_encoding);
  r.authorization = str(h[beast_http::field::authorization]);
  r.deadline_ms = all_values(h, boost::beast::string_view("X-Request-Deadline-Ms"));
  return r;
}

HttpResponse to_http_response(GatewayResponse response) {
  HttpResponse res{static_cast<beast_http::status>(response.status), 11};
  res.set(beast_http::field::content_type, response.content_type);
  for (const auto& [name, value] : response.headers) res.set(name, value);
  res.body() = std::move(response.body);
  return res;
}

}  // namespace tradecapture::http
