/*
 * bench/mqtt_load.h — the MQTT-over-TCP load generator against any broker.
 *
 * mqtt_load_run: cfg->pubs publisher threads and cfg->subs subscriber
 * threads, one connection each. Publishers encode many PUBLISH packets into
 * one buffer and write it at once; subscribers read up to cfg->read_bytes
 * at a time and decode every packet in it. Each payload starts with its send
 * time and sequence number (run.h), from which subscribers take one-way
 * latency, loss and reordering. A publisher runs at most cfg->window
 * messages ahead of the slowest subscriber, so a broker's queues (and this
 * machine's memory) stay bounded and throughput is what is delivered.
 *
 * mqtt_rtt_run: one client subscribes to its own topic, publishes one
 * message and waits for it to come back, cfg->count times.
 *
 * mqtt_idle_run: opens cfg->conns connections (CONNECT, keep alive 600 s),
 * waits cfg->hold_ms and reports the broker's RSS growth per connection.
 *
 * All block until done and return 0, or -errno / an mqtt_err when the run
 * could not be carried out (a broker that is not there, a refused CONNECT);
 * losses are results, not errors.
 */
#ifndef SHIMMY_BENCH_MQTT_LOAD_H
#define SHIMMY_BENCH_MQTT_LOAD_H

#include "bench/run.h"

int mqtt_load_run(const run_cfg *cfg, run_result *out);
int mqtt_rtt_run(const run_cfg *cfg, run_result *out);
int mqtt_idle_run(const run_cfg *cfg, run_result *out);

#endif
