#!/usr/bin/env bash
# The installed package, component by component (issue 11): installs the build tree into a
# temporary prefix, then
#  (a) builds examples/consumer (COMPONENTS core memory) with pkg-config, SOCI, hiredis,
#      librdkafka and prometheus-cpp made unfindable, and checks that none of them was even
#      searched; asking for redis/kafka there gives tradecapture_FOUND FALSE (static build) instead of an error;
#  (b) one consumer project per backend component (soci, redis, kafka, http: a request served
#      end to end over loopback), and one for metrics
#      (prometheus-cpp: a pipeline's collector next to the program's own registry);
#  (c) an unknown component gives tradecapture_FOUND FALSE with a reason;
#  (d) pkg-config: tradecapture.pc and tradecapture-<backend>.pc compile and link a program that
#      checks <tradecapture/version.hpp> against the host's --version; tradecapture-metrics.pc
#      builds the metrics consumer;
#  (e) the man pages (when the build made them: help2man found, no sanitizer) and the bash completion are installed,
#      and the completion completes subcommands and their options.
source "$(dirname "$0")/common.bash" "$1"

source "$HERE/install_common.bash"
CONFIG_DIR=$(dirname "$(ls "$PREFIX"/lib*/cmake/tradecapture/tradecaptureConfig.cmake)")
LIBDIR=$(cd "$CONFIG_DIR/../.." && pwd)
VERSION=$("$TC" --version | head -n1 | awk '{print $2}')
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "tradecapture --version: no version ($VERSION)"
for f in tradecapture/version.hpp tradecapture/memory.hpp tradecapture/pipeline.hpp; do
  [[ -f "$PREFIX/include/$f" ]] || fail "include/$f not installed"
done
# detail/ holds only what the installed templates need (the submission op), no other internals.
DETAIL=$(cd "$PREFIX/include/tradecapture/detail" && ls | tr '\n' ' ')
[[ $DETAIL == "submit_op.hpp " ]] || fail "installed include/tradecapture/detail/ holds: $DETAIL"
# Every installed header compiles alone against the installed tree (no internal header missing).
for h in "$PREFIX"/include/tradecapture/*.hpp "$PREFIX"/include/tradecapture/detail/*.hpp; do
  echo "#include <tradecapture/${h#"$PREFIX"/include/tradecapture/}>" >"$TMP/hdr.cpp"
  g++ -std=c++20 -fsyntax-only -I"$PREFIX/include" "$TMP/hdr.cpp" 2>"$TMP/hdr.err" ||
    fail "installed header ${h#"$PREFIX"/include/} does not compile alone: $(head -3 "$TMP/hdr.err")"
done
echo "ok: installed detail/ holds only submit_op.hpp; every installed header compiles alone"
# Static libraries need their private dependencies at the consumer's link; shared ones do not.
STATIC=0
[[ -f "$LIBDIR/libtradecapture_core.a" ]] && STATIC=1
if ((!STATIC)); then
  readelf -d "$LIBDIR/libtradecapture_core.so" | grep "SONAME.*libtradecapture_core\.so\.[0-9]" >/dev/null ||
    fail "libtradecapture_core.so has no versioned SONAME"
  echo "ok: versioned SONAME ($(readelf -d "$LIBDIR/libtradecapture_core.so" | grep -o 'libtradecapture_core\.so\.[0-9.]*'))"
fi
have() { grep -q "^TRADECAPTURE_BACKEND_$1:BOOL=ON" "$BUILD/CMakeCache.txt"; }
have_metrics() { grep -q "^TRADECAPTURE_METRICS:BOOL=ON" "$BUILD/CMakeCache.txt"; }

# An environment where pkg-config finds nothing and CMake may not find any backend dependency.
mkdir -p "$TMP/empty"
HIDDEN_ENV=(env PKG_CONFIG_LIBDIR="$TMP/empty" PKG_CONFIG_PATH=)
HIDDEN_ARGS=(-DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON -DCMAKE_DISABLE_FIND_PACKAGE_SOCI=ON
  -DCMAKE_DISABLE_FIND_PACKAGE_hiredis=ON -DCMAKE_DISABLE_FIND_PACKAGE_rdkafka=ON
  -DCMAKE_DISABLE_FIND_PACKAGE_RdKafka=ON -DCMAKE_DISABLE_FIND_PACKAGE_prometheus-cpp=ON)

# ---- (a) core + memory without pkg-config, SOCI, hiredis or librdkafka ----------------------
configure "$TMP/consumer" "${HIDDEN_ENV[@]}" cmake -S "$ROOT/examples/consumer" -B "$TMP/consumer" \
  -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release "${HIDDEN_ARGS[@]}"
searched() { grep -v '^CMAKE_DISABLE_FIND_PACKAGE_' "$1" | grep -Ei '^[^#]*(hiredis|rdkafka|SOCI|PKG_CONFIG|prometheus)'; }
if searched "$TMP/consumer/CMakeCache.txt" >&2; then
  fail "a core+memory consumer searched a backend dependency"
fi
run_consumer "core+memory consumer"
grep -q "tradecapture $VERSION headers" "$TMP/consumer.err" || fail "consumer: version.hpp"
echo "ok: (a) core+memory consumer built and ran with no backend dependency findable"

# probe NAME FIND_PACKAGE_ARGS...: a project that only calls find_package and prints the result.
probe() {
  local name=$1
  shift
  mkdir -p "$TMP/$name"
  cat >"$TMP/$name/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project($name LANGUAGES CXX)
find_package(tradecapture $*)
set(memory_target 0)
if(TARGET tradecapture::memory)
  set(memory_target 1)
endif()
message(STATUS "PROBE found=\${tradecapture_FOUND} core=\${tradecapture_core_FOUND} memory=\${tradecapture_memory_FOUND} redis=\${tradecapture_redis_FOUND} kafka=\${tradecapture_kafka_FOUND} memory_target=\${memory_target}")
message(STATUS "PROBE message=\${tradecapture_NOT_FOUND_MESSAGE}")
CMAKE
}
probe_result() { grep -o 'PROBE .*' "$TMP/$1.configure.log"; }

if have REDIS && have KAFKA; then
  probe hidden_required COMPONENTS core memory redis kafka
  configure "$TMP/hidden_required" "${HIDDEN_ENV[@]}" cmake -S "$TMP/hidden_required" \
    -B "$TMP/hidden_required/build" -DCMAKE_PREFIX_PATH="$PREFIX" "${HIDDEN_ARGS[@]}"
  probe hidden_optional REQUIRED COMPONENTS core memory OPTIONAL_COMPONENTS redis kafka
  configure "$TMP/hidden_optional" "${HIDDEN_ENV[@]}" cmake -S "$TMP/hidden_optional" \
    -B "$TMP/hidden_optional/build" -DCMAKE_PREFIX_PATH="$PREFIX" "${HIDDEN_ARGS[@]}"
  if ((STATIC)); then
    probe_result hidden_required | grep -E 'found=(FALSE|0) .*memory=TRUE redis=FALSE kafka=FALSE' >/dev/null ||
      { probe_result hidden_required >&2; fail "redis+kafka without their dependencies: not FALSE"; }
    probe_result hidden_required | grep "hiredis" >/dev/null ||
      { probe_result hidden_required >&2; fail "the not-found message does not name hiredis"; }
    probe_result hidden_optional | grep -E 'found=(TRUE|1) .*memory=TRUE redis=FALSE kafka=FALSE memory_target=1' >/dev/null ||
      { probe_result hidden_optional >&2; fail "optional redis/kafka without dependencies"; }
  else
    probe_result hidden_required | grep -E 'found=(TRUE|1) .*redis=TRUE kafka=TRUE' >/dev/null ||
      { probe_result hidden_required >&2; fail "shared redis/kafka should need no dependency"; }
  fi
  echo "ok: (a) redis/kafka asked for without their dependencies: $(probe_result hidden_required | head -n1)"
fi

# ---- (b) one consumer project per backend component ------------------------------------------
# component_project NAME COMPONENT: CMakeLists.txt asking for core + COMPONENT only.
component_project() {
  mkdir -p "$TMP/$1"
  cat >"$TMP/$1/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project($1 LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(tradecapture $VERSION EXACT REQUIRED COMPONENTS $2)
add_executable($1 main.cpp)
target_link_libraries($1 PRIVATE tradecapture::$2)
CMAKE
}
run_component() {  # run_component NAME EXPECTED-OUTPUT-LINE
  configure "$TMP/$1" cmake -S "$TMP/$1" -B "$TMP/$1/build" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_BUILD_TYPE=Release
  build "$TMP/$1/build"
  (cd "$TMP" && "$TMP/$1/build/$1") >"$TMP/$1.out" 2>"$TMP/$1.err" ||
    { cat "$TMP/$1.err" >&2; fail "$1 failed"; }
  grep -qx "$2" "$TMP/$1.out" || { cat "$TMP/$1.out" "$TMP/$1.err" >&2; fail "$1: output"; }
  echo "ok: (b) $1: $2"
}

if have SOCI; then
  component_project soci_consumer soci
  cat >"$TMP/soci_consumer/main.cpp" <<'CPP'
#include <tradecapture/soci_store.hpp>
#include <cstdio>
int main() {
  auto store = tradecapture::open_soci_store("sqlite:soci_consumer.db");
  if (!store) {
    std::fprintf(stderr, "open_soci_store: %s\n", store.error().message().c_str());
    return 1;
  }
  auto rows = store.value()->positions();
  if (!rows) return 1;
  std::printf("soci: %zu positions\n", rows.value().size());
}
CPP
  run_component soci_consumer "soci: 0 positions"
fi
if have REDIS; then
  component_project redis_consumer redis
  cat >"$TMP/redis_consumer/main.cpp" <<'CPP'
#include <tradecapture/redis_lock.hpp>
#include <spdlog/spdlog.h>
#include <cstdio>
int main() {
  spdlog::set_level(spdlog::level::off);
  auto lock = tradecapture::open_redis_lock("nosuch://x");  // not a redis URI: no connection
  std::printf("redis: %s\n", lock ? "opened" : "bad uri refused");
}
CPP
  run_component redis_consumer "redis: bad uri refused"
fi
if have KAFKA; then
  component_project kafka_consumer kafka
  cat >"$TMP/kafka_consumer/main.cpp" <<'CPP'
#include <tradecapture/kafka_source.hpp>
#include <cstdio>
int main(int argc, char**) {
  if (argc > 100) {  // never: only links the source (and, statically, librdkafka)
    tradecapture::Pipeline pipeline(nullptr, nullptr, nullptr);  // the host's
    tradecapture::KafkaSource source(pipeline, nullptr, {});
    (void)source.run();
  }
  std::printf("kafka: linked\n");
}
CPP
  run_component kafka_consumer "kafka: linked"
fi

if grep -q "^TRADECAPTURE_HTTP:BOOL=ON" "$BUILD/CMakeCache.txt"; then
  # The HTTP server component behind a handler of the program's own: one request end to end
  # over loopback (a Beast client in the same process), then a graceful shutdown.
  component_project http_consumer http
  cat >"$TMP/http_consumer/main.cpp" <<'CPP'
#include <tradecapture/http_server.hpp>
#include <utility>  // before asio with Boost 1.74 and C++20
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <spdlog/spdlog.h>
#include <cstdio>
#include <thread>
namespace beast_http = boost::beast::http;
using namespace tradecapture::http;
struct Hello final : HttpHandler {
  std::optional<HttpResponse> check_header(const HttpRequestHeader&) override { return {}; }
  void handle(HttpRequest req, std::function<void(HttpResponse)> respond) override {
    respond(make_json_response(beast_http::status::ok,
                               "{\"path\": \"" + std::string(req.target()) + "\"}"));
  }
};
int main() {
  boost::asio::io_context ioc;
  Hello hello;
  HttpServerOptions options;
  options.listen = {boost::asio::ip::make_address("127.0.0.1"), 0};
  HttpServer server(ioc, options, hello, spdlog::default_logger());
  const auto endpoint = server.listen();
  server.start();
  std::thread io([&] { ioc.run(); });
  boost::asio::io_context client_ioc;
  boost::beast::tcp_stream stream(client_ioc);
  stream.connect(endpoint);
  HttpRequest req{beast_http::verb::get, "/hello", 11};
  req.set(beast_http::field::host, "127.0.0.1");
  beast_http::write(stream, req);
  boost::beast::flat_buffer buffer;
  HttpResponse res;
  beast_http::read(stream, buffer, res);
  server.shutdown([] {});
  io.join();
  std::printf("http: %u %s\n", res.result_int(), res.body().c_str());
}
CPP
  run_component http_consumer 'http: 200 {"path": "/hello"}'
fi

if have_metrics; then
  # The README's metrics example: the library's collectors next to the program's own registry,
  # serialised once. COMPONENTS memory metrics: prometheus-cpp is found only for 'metrics'.
  mkdir -p "$TMP/metrics_consumer"
  cat >"$TMP/metrics_consumer/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(metrics_consumer LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(tradecapture $VERSION EXACT REQUIRED COMPONENTS memory metrics)
add_executable(metrics_consumer main.cpp)
target_link_libraries(metrics_consumer PRIVATE tradecapture::memory tradecapture::metrics)
CMAKE
  cat >"$TMP/metrics_consumer/main.cpp" <<'CPP'
#include <tradecapture/memory.hpp>
#include <tradecapture/pipeline.hpp>
#include <tradecapture/prometheus_metrics.hpp>
#include <utility>  // before asio with Boost 1.74 and C++20
#include <boost/asio/use_future.hpp>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>
#include <cstdio>
#include <sstream>
#include <string>
int main() {
  using namespace tradecapture;
  spdlog::set_level(spdlog::level::warn);
  Pipeline pipeline(make_memory_store(), make_local_lock(), make_position_processor(), {});
  prometheus::Registry registry;  // the program's own metrics
  prometheus::BuildCounter().Name("orders_total").Help("Orders.").Register(registry).Add({});
  metrics::PipelineCollector pipeline_metrics(pipeline, {.labels = {{"desk", "eq"}}});
  metrics::ProcessCollector process_metrics;
  TradeEvent e;
  e.trade_id = "T1";
  e.version = 1;
  e.partition = {"ACC", "BOOK", "SEC"};
  e.quantity = Decimal::parse("1").value();
  e.price = Decimal::parse("2").value();
  pipeline.async_submit(e, boost::asio::use_future).get();
  std::istringstream text(metrics::serialize({&registry, &pipeline_metrics, &process_metrics}));
  for (std::string line; std::getline(text, line);) {
    if (line.rfind("tradecapture_trades_total{desk=\"eq\",outcome=\"accepted\"}", 0) == 0 ||
        line.rfind("orders_total ", 0) == 0 || line.rfind("# TYPE process_open_fds", 0) == 0)
      std::printf("%s\n", line.c_str());
  }
}
CPP
  configure "$TMP/metrics_consumer" cmake -S "$TMP/metrics_consumer" \
    -B "$TMP/metrics_consumer/build" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=Release
  build "$TMP/metrics_consumer/build"
  "$TMP/metrics_consumer/build/metrics_consumer" >"$TMP/metrics_consumer.out" \
    2>"$TMP/metrics_consumer.err" || { cat "$TMP/metrics_consumer.err" >&2; fail "metrics_consumer failed"; }
  printf '%s\n' 'orders_total 0' 'tradecapture_trades_total{desk="eq",outcome="accepted"} 1' \
    '# TYPE process_open_fds gauge' | sort >"$TMP/metrics_consumer.want"
  sort "$TMP/metrics_consumer.out" | diff "$TMP/metrics_consumer.want" - >&2 ||
    fail "metrics_consumer: output"
  echo "ok: (b) metrics_consumer: its registry, the pipeline's and the process's metrics in one exposition"
else
  echo "skip: (b) metrics_consumer (TRADECAPTURE_METRICS=OFF: prometheus-cpp not found)"
fi

# ---- (c) components that do not exist ----------------------------------------------------------
probe unknown_component COMPONENTS core nosuch
configure "$TMP/unknown_component" cmake -S "$TMP/unknown_component" \
  -B "$TMP/unknown_component/build" -DCMAKE_PREFIX_PATH="$PREFIX"
probe_result unknown_component | grep -E 'found=(FALSE|0)' >/dev/null ||
  { probe_result unknown_component >&2; fail "an unknown component: tradecapture_FOUND not FALSE"; }
probe_result unknown_component | grep "unknown component 'nosuch'" >/dev/null ||
  { probe_result unknown_component >&2; fail "an unknown component: no reason given"; }
echo "ok: (c) an unknown component: tradecapture_FOUND FALSE with the reason"

# ---- (d) pkg-config ----------------------------------------------------------------------------
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
[[ $(pkg-config --modversion tradecapture) == "$VERSION" ]] || fail "pkg-config --modversion"
cat >"$TMP/pc.cpp" <<'CPP'
#include <tradecapture/decimal.hpp>
#include <tradecapture/memory.hpp>
#include <tradecapture/version.hpp>
#include <cstdio>
static_assert(tradecapture::version_string() == TRADECAPTURE_VERSION_STRING);
int main() {
  auto d = tradecapture::Decimal::parse("187.250");
  auto store = tradecapture::make_memory_store();
  if (!d || !store) return 1;
  std::printf("%s %s %d\n", TRADECAPTURE_VERSION_STRING, d.value().to_string().c_str(),
              TRADECAPTURE_VERSION_MAJOR * 10000 + TRADECAPTURE_VERSION_MINOR * 100 +
                  TRADECAPTURE_VERSION_PATCH == TRADECAPTURE_VERSION_NUMBER);
}
CPP
# shellcheck disable=SC2046
${CXX:-c++} -std=c++20 -O0 "$TMP/pc.cpp" -o "$TMP/pc" $(pkg-config --cflags --libs tradecapture-memory) \
  2>"$TMP/pc.log" || { cat "$TMP/pc.log" >&2; fail "compiling with pkg-config tradecapture-memory"; }
LD_LIBRARY_PATH="$LIBDIR" "$TMP/pc" >"$TMP/pc.out" || fail "the pkg-config program failed"
grep -qx "$VERSION 187.25 1" "$TMP/pc.out" || { cat "$TMP/pc.out" >&2; fail "pkg-config program output"; }
for c in soci redis kafka; do
  if have "${c^^}"; then
    pkg-config --exists "tradecapture-$c" || fail "no tradecapture-$c.pc"
  fi
done
if have_metrics; then
  pkg-config --print-requires tradecapture-metrics | grep '^prometheus-cpp-core' >/dev/null ||
    fail "tradecapture-metrics.pc does not require prometheus-cpp-core"
  # shellcheck disable=SC2046
  ${CXX:-c++} -std=c++20 -O0 "$TMP/metrics_consumer/main.cpp" -o "$TMP/pc_metrics" \
    $(pkg-config --cflags --libs tradecapture-metrics tradecapture-memory) 2>"$TMP/pc_metrics.log" ||
    { cat "$TMP/pc_metrics.log" >&2; fail "compiling with pkg-config tradecapture-metrics"; }
  LD_LIBRARY_PATH="$LIBDIR" "$TMP/pc_metrics" | sort | diff "$TMP/metrics_consumer.want" - >&2 ||
    fail "the pkg-config metrics program: output"
fi
if ((STATIC)); then
  pkg-config --libs tradecapture | grep -- -lsimdjson >/dev/null ||
    fail "static tradecapture.pc does not link simdjson (the core's JSON parser)"
fi
if ((STATIC)) && have REDIS; then
  pkg-config --libs tradecapture-redis | grep -- -lhiredis >/dev/null ||
    fail "static tradecapture-redis.pc does not link hiredis"
fi
echo "ok: (d) pkg-config $(pkg-config --cflags --libs tradecapture)"

# ---- (e) man pages and bash completion ---------------------------------------------------------
if [[ -f "$BUILD/man/tradecapture.1" ]]; then  # built when help2man was found (not sanitized)
  for page in tradecapture tradecapture-load; do
    [[ -s "$PREFIX/share/man/man1/$page.1" ]] || fail "man page $page.1 not installed"
  done
  # The main page documents every subcommand's flags (help2man + their --help).
  if command -v man >/dev/null; then
    MANWIDTH=200 man -l "$PREFIX/share/man/man1/tradecapture.1" 2>/dev/null >"$TMP/man.txt"
  else
    sed 's/\\-/-/g' "$PREFIX/share/man/man1/tradecapture.1" >"$TMP/man.txt"
  fi
  for text in "tradecapture replay" "tradecapture serve" "--retry-budget-ms" "--kafka-config" "$VERSION"; do
    grep -qF -- "$text" "$TMP/man.txt" || fail "man page tradecapture.1 lacks '$text'"
  done
  echo "ok: (e) man pages tradecapture.1, tradecapture-load.1"
else
  grep -q '^HELP2MAN_EXECUTABLE:FILEPATH=/' "$BUILD/CMakeCache.txt" &&
    ! grep -q '^TRADECAPTURE_SANITIZE:STRING=.' "$BUILD/CMakeCache.txt" &&
    fail "help2man was found but no man page was generated"
  echo "skip: (e) man pages (no help2man, or a sanitizer build)"
fi
COMPLETION="$PREFIX/share/bash-completion/completions/tradecapture"
[[ -f $COMPLETION ]] || fail "bash completion not installed"
complete_words() {  # complete_words WORD...: the completions of the last word
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
           COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; _tradecapture; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "$COMPLETION" "$@" | sort | tr '\n' ' '
}
[[ $(complete_words tradecapture "") == "consume events positions replay serve " ]] ||
  fail "completion of subcommands: $(complete_words tradecapture "")"
[[ $(complete_words tradecapture serve --max-bod) == "--max-bodies-bytes --max-body-bytes " ]] ||
  fail "completion of serve options: $(complete_words tradecapture serve --max-bod)"
[[ $(complete_words tradecapture replay --log-level w) == "warn " ]] ||
  fail "completion of --log-level: $(complete_words tradecapture replay --log-level w)"
echo "ok: (e) bash completion"
echo "PASS install_components"
