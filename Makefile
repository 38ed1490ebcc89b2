# The two commands of the README, plus the benchmarks. Everything else is CMake.
BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all run test deps build build-programs build-test bench bench-status bench-ingest bench-backup \
        bench-gc bench-s3 bench-s3-gc bench-s3-backup bench-load clean

all: build

deps:
	@sh scripts/deps.sh build

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# `make run` builds only the three programs, not the tests a newcomer never runs.
PROGRAMS = cairnd cairn-admin cairn

build-programs: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target $(PROGRAMS)

run: build-programs
	@sh scripts/run-default.sh $(BUILD)/bin

# Tests run against the sanitizer build, with warnings as errors.
build-test:
	@sh scripts/deps.sh test
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCAIRN_SANITIZE=ON \
	  -DCAIRN_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)

test: build-test
	@cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

bench-status: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/status.py --bin $(BUILD)/bin

bench-ingest: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/ingest.py --bin $(BUILD)/bin

bench-backup: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/backup.py --bin $(BUILD)/bin

bench-gc: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/gc.py --bin $(BUILD)/bin

bench-s3: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/s3.py --bin $(BUILD)/bin

bench-s3-gc: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/s3_gc.py --bin $(BUILD)/bin

bench-s3-backup: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/s3_backup.py --bin $(BUILD)/bin

# Many clients at once (issue #17): 64 clients, TLS, 60 s, GC on by default;
# e.g. `make bench-load LOAD_ARGS="--clients 256"` (bench/README.md).
LOAD_ARGS ?=
# Needs nothing beyond the build: cairn is its own load generator.
bench-load: build
	@/usr/bin/python3 bench/load.py --bin $(BUILD)/bin $(LOAD_ARGS)

bench: bench-status bench-ingest bench-backup bench-gc

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
