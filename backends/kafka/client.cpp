// The Kafka source's librdkafka clients: configuration, the consumer, the results producer's
// client, and librdkafka's log lines.

#include "source_impl.hpp"

namespace tradecapture {
namespace {

using namespace kafka_detail;

spdlog::level::level_enum level_of(int syslog_level) {
  if (syslog_level <= 3) return spdlog::level::err;
  if (syslog_level == 4) return spdlog::level::warn;
  if (syslog_level <= 6) return spdlog::level::info;
  return spdlog::level::debug;
}

}  // namespace

rd_kafka_conf_t* KafkaSource::Impl::make_conf(const Settings& defaults, const Settings& user,
                                              const Settings& forced, const char* what) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto* list : {&defaults, &user, &forced}) {
    for (const auto& [name, value] : *list) {
      if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) !=
          RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        fail(kafka_errc::bad_config, std::string(what) + " setting " + name + ": " + err);
        return nullptr;
      }
    }
  }
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_log_cb(conf, &Impl::log_cb);
  return conf;
}

bool KafkaSource::Impl::start_clients() {
  if (o.brokers.empty() || o.topics.empty() || o.group.empty()) {
    fail(kafka_errc::bad_config, "brokers, at least one topic and a group are required");
    return false;
  }
  char err[512];
  rd_kafka_conf_t* conf = make_conf(
      {{"bootstrap.servers", o.brokers},
       {"client.id", "tradecapture"},
       {"auto.offset.reset", "earliest"},
       {"queued.max.messages.kbytes", "16384"}},
      o.consumer_config,
      {{"group.id", o.group},
       {"enable.auto.commit", "false"},
       {"enable.auto.offset.store", "false"},
       {"enable.partition.eof", "false"}},
      "consumer");
  if (conf == nullptr) return false;
  rd_kafka_conf_set_rebalance_cb(conf, &Impl::rebalance_cb);
  consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (consumer == nullptr) {
    rd_kafka_conf_destroy(conf);
    fail(kafka_errc::client_error, std::string("cannot create the consumer: ") + err);
    return false;
  }
  rd_kafka_poll_set_consumer(consumer);
  if (results) {
    rd_kafka_conf_t* pconf = make_conf({{"bootstrap.servers", o.brokers},
                                        {"client.id", "tradecapture-results"},
                                        {"linger.ms", "5"},
                                        {"queue.buffering.max.messages", "1000000"}},
                                       o.producer_config, {}, "producer");
    if (pconf == nullptr) return false;
    std::string error;
    if (!results->start(pconf, error)) {
      fail(kafka_errc::client_error, error);
      return false;
    }
  }
  PartitionList topics(rd_kafka_topic_partition_list_new(static_cast<int>(o.topics.size())));
  for (const auto& t : o.topics)
    rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto e = rd_kafka_subscribe(consumer, topics.get())) {
    fail(kafka_errc::client_error, std::string("cannot subscribe: ") + rd_kafka_err2str(e));
    return false;
  }
  return true;
}

void KafkaSource::Impl::log_cb(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  auto* self = static_cast<Impl*>(rd_kafka_opaque(rk));
  if (self != nullptr) self->log->log(level_of(level), "librdkafka {}: {}", fac, buf);
}

}  // namespace tradecapture
