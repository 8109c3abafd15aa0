# Thin wrapper over CMake. See README.md.
#   make          Release build in build/ (binaries in build/bin/)
#   make run      install run deps, build Release, start shimmyd in the foreground
#   make test     install test deps, ASan+UBSan build in build/test, run ctest
#   make bench    Release build in build/, Shimmy vs Mosquitto (bench/run_bench.sh)
#   make bench-paper  the paper's evaluation with plots (bench/run_paper.sh)
JOBS ?= $(shell nproc)
CLANG := $(shell command -v clang 2>/dev/null)

.PHONY: all build run test clean deps-run deps-test bench bench-paper

all: build

deps-run:
	@scripts/deps.sh run

deps-test:
	@scripts/deps.sh test

build: deps-run
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSHIMMY_TESTS=OFF >/dev/null
	cmake --build build -j$(JOBS)

run: build
	exec build/bin/shimmyd

# The test build uses clang when present, so the libFuzzer harnesses are built
# and given a short run; otherwise gcc, without fuzzing.
test: deps-test
	cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Debug -DSHIMMY_SANITIZE=ON \
	  $(if $(shell command -v clang 2>/dev/null),-DCMAKE_C_COMPILER=clang -DSHIMMY_FUZZ=ON,) >/dev/null
	cmake --build build/test -j$(JOBS)
	cd build/test && ctest --output-on-failure -j$(JOBS)

# Benchmarks need the peers (mosquitto, librdkafka, gnuplot): the test deps.
bench: deps-test
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSHIMMY_TESTS=OFF >/dev/null
	cmake --build build -j$(JOBS)
	bench/run_bench.sh build/bin

bench-paper: deps-test
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSHIMMY_TESTS=OFF >/dev/null
	cmake --build build -j$(JOBS)
	bench/run_paper.sh build/bin

clean:
	rm -rf build
