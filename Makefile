# The two commands of the README, plus the benchmarks. Everything else is CMake.
BUILD      ?= build
TEST_BUILD ?= build-test
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 60
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all run test deps build build-programs build-test fuzz fuzz-build fuzz-corpus bench bench-status bench-ingest bench-backup \
        bench-gc bench-s3 bench-s3-gc bench-s3-backup bench-load bench-locks crash-loop clean bench-metrics image bench-sync

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
	  -DCAIRN_WERROR=ON -DCAIRN_FUZZ_BIN_DIR=$(abspath $(FUZZ_BUILD))/bin $(CMAKE_ARGS) >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)

# The fuzz.* ctest entries run the libFuzzer targets of the clang build for a
# few seconds each, so the fuzz build comes first (in order, also under -j).
test: fuzz-build
	@$(MAKE) --no-print-directory build-test
	@cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

# libFuzzer targets (clang, ASan+UBSan, warnings as errors), see docs/fuzzing.md.
fuzz-build:
	@sh scripts/deps.sh test
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCAIRN_FUZZ=ON -DCAIRN_SANITIZE=ON \
	  -DCAIRN_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz

# Every target for FUZZ_TIME seconds over its seed corpus, one summary line each.
fuzz: fuzz-build
	@sh fuzz/run.sh $(FUZZ_BUILD)/bin $(FUZZ_TIME)

# Rewrites the seed corpus (fuzz/corpus/) after an input format changed.
fuzz-corpus: fuzz-build
	@cmake --build $(FUZZ_BUILD) --target fuzz_gen_corpus
	@$(FUZZ_BUILD)/bin/fuzz_gen_corpus fuzz/corpus

# The crash-consistency loop of the test suite, longer: `make crash-loop N=1000`
# (SEED=<n> replays a seed the loop printed; S3=1: the S3 datastore on s3rver).
N ?= 200
crash-loop: build-test
	@CAIRN_BIN_DIR=$(CURDIR)/$(TEST_BUILD)/bin CAIRN_CRASH_ITERATIONS=$(N) \
	  CAIRN_CRASH_S3_ITERATIONS=$(N) $(if $(SEED),CAIRN_CRASH_SEED=$(SEED)) \
	  /usr/bin/python3 test/integration/test_crash_loop.py \
	  $(if $(S3),S3CrashLoopTest.test_crash_loop,CrashLoopTest.test_crash_loop)

bench-status: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/status.py --bin $(BUILD)/bin

bench-ingest: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/ingest.py --bin $(BUILD)/bin

bench-backup: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/backup.py --bin $(BUILD)/bin

bench-locks: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/locks.py --bin $(BUILD)/bin
bench-sync: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/sync.py --bin $(BUILD)/bin

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

# A /metrics scrape with 10,000 backup groups: server time and loop stall.
bench-metrics: build
	@/usr/bin/python3 bench/metrics.py --bin $(BUILD)/bin
# The OCI image (Containerfile) as localhost/cairn:latest; docs/deployment.md.
IMAGE ?= localhost/cairn:latest
image:
	@sh scripts/deps.sh image
	@sh scripts/image.sh $(IMAGE)

# Every benchmark that needs no S3 server, one summary: bench/results/latest.json
# (bench/README.md); e.g. BENCH_ARGS="--only ingest,gc". bench/compare A B diffs two.
BENCH_ARGS ?=
bench: build
	@sh scripts/deps.sh bench
	@/usr/bin/python3 bench/run_all.py --bin $(BUILD)/bin $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)
