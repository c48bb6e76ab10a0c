// The host's `--listen HOST:PORT` flag and the HTTP server's bind, as host errors (exit codes).

#include "conventions.hpp"
#include "host.hpp"
#include "http_server.hpp"

#include <utility>  // must precede asio with Boost 1.74 and C++20

#include <boost/asio/io_context.hpp>

#include <system_error>

namespace tradecapture::host {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

tcp::endpoint resolve_listen(const std::string& flag, const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size())
    throw HostError(flag + " '" + listen + "' is not HOST:PORT", exit_usage);
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (!cli::parse_port(port, true))
    throw HostError(flag + " '" + listen + "': the port must be a number from 0 to 65535 " +
                        "(0: any free port)",
                    exit_usage);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) throw HostError(flag + " '" + listen + "' has no host", exit_usage);
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  boost::system::error_code ec;
  auto results =
      resolver.resolve(host, port, tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty())
    throw HostError(flag + " '" + listen + "': cannot resolve: " + ec.message(), exit_usage);
  return results.begin()->endpoint();
}

tcp::endpoint listen_or_throw(HttpServer& server) {
  try {
    return server.listen();
  } catch (const std::system_error& e) {
    throw HostError(e.what());
  }
}

}  // namespace tradecapture::host
