# Thin wrapper over CMake. The two commands of the README:
#   make demo   the example end to end (installs dependencies first)
#   make test   the whole suite: normal and sanitizer builds, format check
#   make bench  p2prpc beside its peers; writes bench/REPORT.md (< 10 min)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
BUILD_ASAN ?= build-asan
PREFIX ?= /usr/local

.PHONY: all deps build build-asan bench bench-quick test test-unit test-asan format check-format demo golden install clean

all: build

deps:
	@bash scripts/deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j $(JOBS)

build-asan:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DP2P_SANITIZE=ON
	cmake --build $(BUILD_ASAN) -j $(JOBS)

test: deps
	@bash scripts/test.sh

bench:
	@bash scripts/bench.sh

bench-quick:
	@bash scripts/bench.sh --quick

# Quicker loop while developing: the normal build's unit tests only.
test-unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure -j $(JOBS)

format:
	@bash scripts/format.sh --fix

check-format:
	@bash scripts/format.sh --check

demo: deps
	@bash scripts/demo.sh

# After a deliberate change of the generators or an example: regenerate
# tests/golden/ (review `git diff tests/golden`, then commit it).
golden: build
	@bash scripts/update-golden.sh $(BUILD)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# The codegen parser's libFuzzer target (clang): make fuzz [FUZZ_SECONDS=600]
.PHONY: fuzz
FUZZ_SECONDS ?= 600
fuzz:
	@bash scripts/fuzz_parser.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
