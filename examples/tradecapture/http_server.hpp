#pragma once
/// \file http_server.hpp
/// The host's view of the HTTP server component (`tradecapture::http`, backends/http): its types
/// and the conversions between Beast's messages and the gateway's (`tradecapture::Gateway`,
/// gateway_http.hpp) in the host's namespace, Beast's `http` namespace as `http`, and the
/// `--listen` parser.

#include <tradecapture/gateway.hpp>
#include <tradecapture/gateway_http.hpp>
#include <tradecapture/http_server.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <string>

namespace tradecapture::host {

namespace http = boost::beast::http;
using tradecapture::http::HttpHandler;
using tradecapture::http::HttpRequest;
using tradecapture::http::HttpRequestHeader;
using tradecapture::http::HttpResponse;
using tradecapture::http::HttpServer;
using tradecapture::http::HttpServerOptions;
using tradecapture::http::HttpStats;
using tradecapture::http::make_error_response;
using tradecapture::http::make_json_response;
using tradecapture::http::to_gateway_request;
using tradecapture::http::to_http_response;

/// Resolves a numeric `HOST:PORT` (`[v6]:PORT` too; port 0..65535, 0 picks a free port) given
/// with `flag` (for messages). Throws HostError (exit 64) when it is not one.
boost::asio::ip::tcp::endpoint resolve_listen(const std::string& flag, const std::string& listen);

/// `server.listen()`, with a failure (address in use, permission) as a HostError (exit 69).
boost::asio::ip::tcp::endpoint listen_or_throw(HttpServer& server);

}  // namespace tradecapture::host
