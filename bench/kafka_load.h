/*
 * bench/kafka_load.h — the same load (N producers -> M consumers, stamped
 * payloads, one-way latency, loss) against Kafka through librdkafka.
 *
 * cfg->kafka is "HOST:PORT" of a real cluster, or "mock": librdkafka's
 * built-in mock cluster (test.mock.num.brokers=1) inside this process. Mock
 * results are labelled system=kafka-mock, never kafka: the mock broker is a
 * test double, not Kafka's storage or network path.
 * QoS maps to acks: 0 -> acks=0, 1 -> acks=all. Consumers read partition 0
 * of a fresh topic from the beginning (assign, no group rebalance), so each
 * consumer gets every message, as MQTT subscribers do.
 * Built only when librdkafka is found (SHIMMY_BENCH_KAFKA).
 */
#ifndef SHIMMY_BENCH_KAFKA_LOAD_H
#define SHIMMY_BENCH_KAFKA_LOAD_H

#include "bench/run.h"

/* Returns 0 or a negative error; fills *out. Labels cfg's system. */
int kafka_load_run(run_cfg *cfg, run_result *out);

#endif
