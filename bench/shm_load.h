/*
 * bench/shm_load.h — load and round-trip runs over Shimmy's shared-memory
 * path, through libshimmy on the broker's Unix socket (--transport shm).
 *
 * Same measurements as mqtt_load.h (payload stamps, one-way latency,
 * window of messages a publisher may run ahead of the slowest subscriber,
 * so a lossy log is not lapped unless --window 0), with libshimmy clients
 * that require the negotiation (SHIMMY_OPT_REQUIRE_SHM). Publishers use the
 * loan API (reserve in the ring, stamp and fill in place, commit).
 * Returns 0, or a negative error when the run could not be carried out.
 * Thread model: one thread per client plus the caller's.
 */
#ifndef SHIMMY_BENCH_SHM_LOAD_H
#define SHIMMY_BENCH_SHM_LOAD_H

#include "bench/run.h"

int shm_load_run(const run_cfg *cfg, run_result *out);
int shm_rtt_run(const run_cfg *cfg, run_result *out);

#endif
