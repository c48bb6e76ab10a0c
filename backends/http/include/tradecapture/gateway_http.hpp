#pragma once
/// \file gateway_http.hpp
/// The library's transport-free gateway (`tradecapture::Gateway`, `<tradecapture/gateway.hpp>`)
/// behind the Beast server of `<tradecapture/http_server.hpp>`: the two conversions an
/// `HttpHandler` needs to put a `Gateway` behind an `HttpServer`, as `tradecapture serve` does.
/// `check_header` answers `gateway.check(to_gateway_request(header))` through `to_http_response`;
/// `handle_at` fills `to_gateway_request(request.base())` with the body and the arrival time,
/// calls `gateway.async_handle` and responds with `to_http_response` of its answer.

#include <tradecapture/gateway.hpp>
#include <tradecapture/http_server.hpp>

namespace tradecapture::http {

/// The fields of a Beast request header the gateway reads: method, target, `Content-Type`, every
/// `Content-Encoding`, `Authorization` and every `X-Request-Deadline-Ms` (no body, no arrival
/// time: the caller adds them).
GatewayRequest to_gateway_request(const HttpRequestHeader& header);

/// A gateway answer as a Beast response: its status, `Content-Type`, extra headers and body, for
/// HTTP/1.1 (the server sets the request's version).
HttpResponse to_http_response(GatewayResponse response);

}  // namespace tradecapture::http
