// tradecapture-kafka-mock: a test tool around librdkafka's mock cluster, so that shell tests can
// run `tradecapture consume` processes (and kill them) against a Kafka without installing one.
//
//   cluster [--brokers N] [--topic NAME:PARTITIONS[:REPLICATION]]...
//       Starts a mock cluster on 127.0.0.1, prints its bootstrap servers on the first line of
//       stdout, then reads commands on stdin until `quit` or SIGTERM/SIGINT (stdin at EOF: runs
//       until signalled): `down BROKER`, `up BROKER`, `leader TOPIC PARTITION BROKER`,
//       `errors APIKEY COUNT ERRCODE` (push request errors), `rtt BROKER MS`.
//   produce --brokers B --topic T [--mapping FILE] [--dry-run] INPUT
//       Produces each non-blank line of INPUT as one message, keyed per the tradecapture
//       contract (PartitionKey::encode() of the line's account/book/security when they are JSON
//       strings, no key otherwise), to the partition murmur2(key) % partitions (Java's default
//       partitioner; unkeyed lines go to partition 0). Writes "LINE PARTITION OFFSET" per
//       message to FILE (with --dry-run: "LINE PARTITION", nothing produced).
//   dump --brokers B --topic T --count N [--timeout-ms MS]
//       Prints the values of the first N messages of every partition (from the start), one per
//       line; exits 1 when fewer arrive in time.

#include "../tradecapture/conventions.hpp"

#include <tradecapture/types.hpp>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <nlohmann/json.hpp>
#include <CLI/CLI.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }

[[noreturn]] void die(const std::string& what, int code = tradecapture::cli::exit_unavailable) {
  std::fprintf(stderr, "tradecapture-kafka-mock: %s\n", what.c_str());
  std::exit(code);
}

/// A count in a --topic spec: a positive decimal number; a usage error otherwise.
int spec_number(const std::string& spec, const std::string& text) {
  const auto n = tradecapture::cli::parse_number<int>(text);
  if (!n || *n < 1)
    die("--topic '" + spec + "' is not NAME:PARTITIONS[:REPLICATION]",
        tradecapture::cli::exit_usage);
  return *n;
}

void set(rd_kafka_conf_t* conf, const char* name, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, name, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
    die(std::string(name) + ": " + err);
}

int run_cluster(int brokers, const std::vector<std::string>& topics) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "log_level", "3");
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) die(err);
  rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (mc == nullptr) die("cannot start the mock cluster");
  for (const auto& t : topics) {
    std::string name = t;
    int partitions = 1, replication = 1;
    if (auto c = t.find(':'); c != std::string::npos) {
      name = t.substr(0, c);
      std::string rest = t.substr(c + 1);
      auto c2 = rest.find(':');
      partitions = spec_number(t, rest.substr(0, c2));
      if (c2 != std::string::npos) replication = spec_number(t, rest.substr(c2 + 1));
    }
    if (rd_kafka_mock_topic_create(mc, name.c_str(), partitions, replication))
      die("cannot create topic " + name);
  }
  std::printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
  std::fflush(stdout);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::thread commands([mc] {
    std::string line;
    while (std::getline(std::cin, line)) {
      std::istringstream in(line);
      std::string cmd;
      in >> cmd;
      rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
      if (cmd == "quit") {
        g_stop.store(true);
        return;
      } else if (cmd == "down" || cmd == "up") {
        int id = 0;
        in >> id;
        e = cmd == "down" ? rd_kafka_mock_broker_set_down(mc, id)
                          : rd_kafka_mock_broker_set_up(mc, id);
      } else if (cmd == "leader") {
        std::string topic;
        int partition = 0, id = 0;
        in >> topic >> partition >> id;
        e = rd_kafka_mock_partition_set_leader(mc, topic.c_str(), partition, id);
      } else if (cmd == "errors") {
        int api = 0, count = 0, code = 0;
        in >> api >> count >> code;
        std::vector<rd_kafka_resp_err_t> errs(static_cast<std::size_t>(count),
                                              static_cast<rd_kafka_resp_err_t>(code));
        rd_kafka_mock_push_request_errors_array(mc, static_cast<std::int16_t>(api), errs.size(),
                                                errs.data());
      } else if (cmd == "rtt") {
        int id = 0, ms = 0;
        in >> id >> ms;
        e = rd_kafka_mock_broker_set_rtt(mc, id, ms);
      } else if (!cmd.empty()) {
        std::fprintf(stderr, "tradecapture-kafka-mock: unknown command '%s'\n", cmd.c_str());
        continue;
      }
      if (e) std::fprintf(stderr, "tradecapture-kafka-mock: %s: %s\n", line.c_str(),
                          rd_kafka_err2str(e));
      std::fprintf(stderr, "tradecapture-kafka-mock: done: %s\n", line.c_str());
    }
  });
  commands.detach();  // blocked in getline when stdin stays open; the process exit ends it
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}

/// The key of an input line: PartitionKey::encode() when account, book and security are JSON
/// strings (whether or not the rest is a valid event), none otherwise.
std::optional<std::string> key_of(const std::string& line) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  for (const char* f : {"account", "book", "security"})
    if (!j.contains(f) || !j[f].is_string()) return std::nullopt;
  tradecapture::PartitionKey k{j["account"].get<std::string>(), j["book"].get<std::string>(),
                               j["security"].get<std::string>()};
  return k.encode();
}

int run_produce(const std::string& brokers, const std::string& topic, const std::string& input,
                const std::string& mapping, bool dry_run) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", brokers);
  set(conf, "linger.ms", "5");
  set(conf, "max.in.flight.requests.per.connection", "1");
  set(conf, "log_level", "3");
  struct Sent {
    std::uint64_t line;
    std::int32_t partition;
    std::int64_t offset = -1;
  };
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    auto* s = static_cast<Sent*>(m->_private);
    if (m->err) die(std::string("delivery failed: ") + rd_kafka_err2str(m->err));
    s->offset = m->offset;
  });
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) die(err);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 ||
      md->topics[0].partition_cnt <= 0)
    die("no metadata for topic " + topic);
  const int partitions = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);

  std::ifstream in(input, std::ios::binary);
  if (!in) die("cannot open " + input, tradecapture::cli::exit_noinput);
  std::vector<std::pair<std::optional<std::string>, std::string>> lines;
  std::vector<Sent> sent;
  std::string line;
  std::uint64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank: no message
    auto key = key_of(line);
    const std::int32_t p =
        key ? rd_kafka_msg_partitioner_murmur2(rkt, key->data(), key->size(), partitions, nullptr,
                                               nullptr)
            : 0;
    lines.emplace_back(std::move(key), line);
    sent.push_back(Sent{n, p});
  }
  if (!dry_run) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const auto& [key, value] = lines[i];
      const void* kp = key ? static_cast<const void*>(key->data()) : nullptr;
      const std::size_t kl = key ? key->size() : 0;
      for (;;) {
        auto e = rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(sent[i].partition),
                                   RD_KAFKA_V_KEY(kp, kl),
                                   RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                   RD_KAFKA_V_OPAQUE(&sent[i]), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          rd_kafka_poll(rk, 10);
          continue;
        }
        if (e) die(std::string("produce failed: ") + rd_kafka_err2str(e));
        break;
      }
    }
    if (rd_kafka_flush(rk, 60000)) die("flush timed out");
  }
  if (!mapping.empty()) {
    std::ofstream out(mapping);
    for (const auto& s : sent) {
      out << s.line << ' ' << s.partition;
      if (!dry_run) out << ' ' << s.offset;
      out << '\n';
    }
  }
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return 0;
}

int run_dump(const std::string& brokers, const std::string& topic, std::size_t count,
             long long timeout_ms) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", brokers);
  set(conf, "group.id", "tradecapture-kafka-mock-dump");
  set(conf, "log_level", "3");
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) die(err);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 ||
      md->topics[0].partition_cnt <= 0)
    die("no metadata for topic " + topic);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  for (int p = 0; p < md->topics[0].partition_cnt; ++p)
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  if (rd_kafka_assign(rk, list)) die("assign failed");
  rd_kafka_topic_partition_list_destroy(list);
  std::size_t got = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (got < count && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (!m->err) {
      std::fwrite(m->payload, 1, m->len, stdout);
      std::fputc('\n', stdout);
      ++got;
    }
    rd_kafka_message_destroy(m);
  }
  std::fflush(stdout);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (got < count) {
    std::fprintf(stderr, "tradecapture-kafka-mock: %zu of %zu messages of %s\n", got, count,
                 topic.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tradecapture-kafka-mock: librdkafka's mock cluster for tests",
               "tradecapture-kafka-mock"};
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       tradecapture::cli::version_line("tradecapture-kafka-mock") +
                           "\nlibrdkafka " + rd_kafka_version_str(),
                       "print the version and exit");
  app.footer(
      "Exit codes: 0 done, 1 dump: fewer messages than --count in time, 64 usage error, 69 the\n"
      "mock cluster or a client could not be set up.");

  int brokers = 3;
  std::vector<std::string> topics;
  auto* cluster = app.add_subcommand("cluster", "start a mock cluster (see the source header)");
  cluster->add_option("--brokers", brokers, "broker count")->capture_default_str();
  cluster->add_option("--topic", topics, "NAME:PARTITIONS[:REPLICATION] (repeat)");

  std::string bootstrap, topic, input, mapping;
  bool dry_run = false;
  auto* produce = app.add_subcommand("produce", "produce the lines of a file, keyed per contract");
  produce->add_option("--brokers", bootstrap)->required();
  produce->add_option("--topic", topic)->required();
  produce->add_option("--mapping", mapping, "write LINE PARTITION OFFSET per message here");
  produce->add_flag("--dry-run", dry_run, "compute the partitions only");
  produce->add_option("INPUT", input)->required();

  std::size_t count = 0;
  long long timeout_ms = 60000;
  auto* dump = app.add_subcommand("dump", "print the first COUNT messages of a topic");
  dump->add_option("--brokers", bootstrap)->required();
  dump->add_option("--topic", topic)->required();
  dump->add_option("--count", count)->required();
  dump->add_option("--timeout-ms", timeout_ms)->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11_PARSE would exit with CLI11's own code (106 and the like): usage errors are 64.
    return app.exit(e) == 0 ? 0 : tradecapture::cli::exit_usage;
  }
  if (cluster->parsed()) return run_cluster(brokers, topics);
  if (produce->parsed()) return run_produce(bootstrap, topic, input, mapping, dry_run);
  if (dump->parsed()) return run_dump(bootstrap, topic, count, timeout_ms);
  return tradecapture::cli::exit_usage;
}
