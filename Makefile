# Turbine / loom: one non-recursive GNU Makefile.
#
#   make [MODE=release|debug|asan|tsan]   build the libraries, tests, benchmarks and examples
#   make test          release + asan (+ tsan for cross-thread tests) builds, then every test
#   make test-valgrind the unit tests under valgrind memcheck
#   make bench         benchmarks (release), bench: lines + JSON under build/bench/
#   make bench-peers   produce throughput and latency against Redis Streams and NATS JetStream
#   make run           the main job: the broker (build/release/turbine broker) in the foreground
#   make install       [PREFIX=/usr/local] [DESTDIR=] the release command, libraries, headers, .pc
#                      files, man page; make uninstall
#   make format / check-format / clean
#
# Sources are found by name: loom/src/*.c (minus *_test.c, *_bench.c) make libloom; every
# *_test.c is a test program, every *_bench.c a benchmark, every examples/*.c an example.

MODE ?= release
BUILD := build/$(MODE)
CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif

MODES := release debug asan tsan
ifeq ($(filter $(MODE),$(MODES)),)
$(error MODE must be one of: $(MODES))
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter -Wvla -Wformat=2
BASE_CFLAGS := -std=gnu17 -g -pthread -D_GNU_SOURCE -fno-strict-aliasing \
               -Iloom/include -Iloom/src -Itest -MMD -MP
LIB_CFLAGS := -fvisibility=hidden -fPIC

MODE_CFLAGS_release := -O2
MODE_CFLAGS_debug := -O0 -DLOOM_DEBUG=1
MODE_CFLAGS_asan := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                    -fno-sanitize-recover=all -DLOOM_DEBUG=1
MODE_CFLAGS_tsan := -O1 -fno-omit-frame-pointer -fsanitize=thread -DLOOM_DEBUG=1
MODE_LDFLAGS_asan := -fsanitize=address,undefined
MODE_LDFLAGS_tsan := -fsanitize=thread

# V=1 shows the commands
V ?= 0
ifeq ($(V),0)
Q := @
say = printf '  %-6s %s\n' $(1) $(2);
else
Q :=
say =
endif

CFLAGS ?=
LDFLAGS ?=
ALL_CFLAGS := $(BASE_CFLAGS) $(WARN) $(MODE_CFLAGS_$(MODE)) $(CFLAGS)
ALL_LDFLAGS := -pthread $(MODE_LDFLAGS_$(MODE)) $(LDFLAGS)
LIBS := -luring -lhwloc -lm

LOOM_SRCS := $(filter-out %_test.c %_bench.c,$(wildcard loom/src/*.c)) $(wildcard loom/src/*.S)
LOOM_OBJS := $(patsubst %,$(BUILD)/obj/%.o,$(LOOM_SRCS))
TEST_SRCS := $(wildcard loom/src/*_test.c test/*_test.c)
BENCH_SRCS := $(wildcard loom/src/*_bench.c bench/*_bench.c)
EXAMPLE_SRCS := $(wildcard examples/*.c)
HARNESS_SRCS := $(filter-out %_test.c,$(wildcard test/*.c))
HARNESS_OBJS := $(patsubst %,$(BUILD)/obj/%.o,$(HARNESS_SRCS))
BENCHLIB_SRCS := $(filter-out %_bench.c,$(wildcard bench/*.c))
BENCHLIB_OBJS := $(patsubst %,$(BUILD)/obj/%.o,$(BENCHLIB_SRCS))

TESTS := $(patsubst %.c,$(BUILD)/test/%,$(notdir $(TEST_SRCS)))
BENCHES := $(patsubst %.c,$(BUILD)/bench/%,$(notdir $(BENCH_SRCS)))
EXAMPLES := $(patsubst %.c,$(BUILD)/examples/%,$(notdir $(EXAMPLE_SRCS)))
LIBLOOM_A := $(BUILD)/libloom.a
LIBLOOM_SO := $(BUILD)/libloom.so
DEPS_STAMP := build/.deps-ok

vpath %_test.c loom/src test
vpath %_bench.c loom/src bench
vpath %.c examples

.PHONY: all lib tests benches examples test test-valgrind bench run format check-format \
        clean deps checkheaders
.DEFAULT_GOAL := all
.SECONDARY:

all: lib tests benches examples checkheaders
lib: $(LIBLOOM_A) $(LIBLOOM_SO)
tests: $(TESTS) $(EXAMPLES)
benches: $(BENCHES)
examples: $(EXAMPLES)

# Dependencies: install what is missing once per checkout (scripts/deps.sh is idempotent).
deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@mkdir -p build
	@scripts/deps.sh
	@touch $@

$(BUILD)/obj/%.c.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$<)$(CC) $(ALL_CFLAGS) $(LIB_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.S.o: %.S | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,AS,$<)$(CC) $(ALL_CFLAGS) $(LIB_CFLAGS) -c $< -o $@

$(LIBLOOM_A): $(LOOM_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)$(call say,AR,$@)ar rcs $@ $^

$(LIBLOOM_SO): $(LOOM_OBJS)
	$(Q)$(call say,LD,$@)$(CC) -shared $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# Tests and benchmarks link the static library so they can reach loom__ internals.
$(BUILD)/test/%: %.c $(HARNESS_OBJS) $(LIBLOOM_A) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(HARNESS_OBJS) \
	    $(LIBLOOM_A) $(LIBS)

$(BUILD)/bench/%: %.c $(BENCHLIB_OBJS) $(LIBLOOM_A) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_CFLAGS) -Ibench $(ALL_LDFLAGS) -o $@ $< $(BENCHLIB_OBJS) $(LIBLOOM_A) \
	    $(LIBS) $(BENCH_LIBS_$*)

# Examples use only the public headers.
$(BUILD)/examples/%: %.c $(LIBLOOM_A) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) -std=gnu17 -g -O2 -pthread -Wall -Wextra -Werror -Iloom/include \
	    $(MODE_CFLAGS_$(MODE)) $(ALL_LDFLAGS) -o $@ $< $(LIBLOOM_A) $(LIBS)

# Every public header compiles on its own (Seastar's checkheaders).
PUBLIC_HEADERS := $(wildcard loom/include/loom/*.h)
HEADER_CHECKS := $(patsubst loom/include/loom/%.h,$(BUILD)/checkheaders/%.ok,$(PUBLIC_HEADERS))
checkheaders: $(HEADER_CHECKS)
$(BUILD)/checkheaders/%.ok: loom/include/loom/%.h
	@mkdir -p $(dir $@)
	@echo '#include "loom/$*.h"' | $(CC) -std=gnu17 -Wall -Wextra -Werror -Iloom/include \
	    -x c -fsyntax-only - && touch $@

$(BUILD)/obj/bench/%.c.o: bench/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -Ibench -c $< -o $@

$(BUILD)/obj/test/%.c.o: test/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -c $< -o $@

BENCH_LIBS_nop_bench := -luring

# ---- peer servers and load generators for benchmarks (bench/peers) ----
# The echo benchmark's baselines (echo_uring: bare liburing; echo_uv: libuv) and its load
# generator (echo_client) are programs of their own in $(BUILD)/bench/peers/, not linked with
# benchlib or loom. echo_bench (bench/peers/echo_bench.c) starts them and the loom echo server
# as child processes; it is built into $(BUILD)/bench/ so scripts/bench.sh runs it.
PEER_PROGRAMS := echo_uring echo_uv echo_client sink_uring
PEERS := $(patsubst %,$(BUILD)/bench/peers/%,$(PEER_PROGRAMS))
PEER_LIBS_echo_uring := -luring
PEER_LIBS_echo_uv := -luv
PEER_LIBS_echo_client := -luring
PEER_LIBS_sink_uring := -luring
ECHO_BENCH := $(BUILD)/bench/echo_bench
benches: $(PEERS) $(ECHO_BENCH)

$(BUILD)/bench/peers/%: bench/peers/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(PEER_LIBS_$*)

$(ECHO_BENCH): bench/peers/echo_bench.c $(BENCHLIB_OBJS) | $(PEERS) $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_CFLAGS) -Ibench $(ALL_LDFLAGS) -o $@ $< $(BENCHLIB_OBJS)

# The produce comparison (make bench-peers, scripts/bench_peers.sh): load generators for Redis
# Streams (hiredis) and NATS JetStream (libnats) sharing peer_load.c (options, result line) and
# turbine's latency histogram, compiled in from source so they need no turbine library.
PEER_LOADS := $(BUILD)/bench/peers/redis_load $(BUILD)/bench/peers/nats_load
PEER_LOAD_COMMON := bench/peers/peer_load.c turbine/src/util/histogram.c
PEER_LIBS_redis_load := -lhiredis
PEER_LIBS_nats_load := -lnats
benches: $(PEER_LOADS)

$(PEER_LOADS): $(BUILD)/bench/peers/%: bench/peers/%.c $(PEER_LOAD_COMMON) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_CFLAGS) -Iturbine/src -Ibench/peers $(ALL_LDFLAGS) -o $@ \
	    $< $(PEER_LOAD_COMMON) $(PEER_LIBS_$*) -lm

.PHONY: bench-peers
bench-peers: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release $(subst $(BUILD),build/release,$(PEER_LOADS)) \
	    build/release/turbine
	@scripts/bench_peers.sh
# ---- end of bench/peers ----

# ---- turbine ----
# turbine/src/**/*.c (minus *_test.c, *_bench.c, *_fuzz.c) make libturbine.a, built with
# -Iturbine/include -Iturbine/src. Every turbine *_test.c is a test program and every *_bench.c
# a benchmark (linked with libturbine.a and libloom.a); every *_fuzz.c is a libFuzzer target
# (make fuzz: clang, into build/fuzz/) and also a replay program $(BUILD)/test/NAME_test that
# runs its corpus through LLVMFuzzerTestOneInput in every make test (test/fuzz_replay.h).
TURBINE_DIRS := $(sort $(dir $(shell find turbine/src -name '*.c' 2>/dev/null)))
TURBINE_ALL_SRCS := $(shell find turbine/src -name '*.c' 2>/dev/null)
TURBINE_SRCS := $(filter-out %_test.c %_bench.c %_fuzz.c,$(TURBINE_ALL_SRCS))
TURBINE_OBJS := $(patsubst %,$(BUILD)/obj/%.o,$(TURBINE_SRCS))
TURBINE_TEST_SRCS := $(filter %_test.c,$(TURBINE_ALL_SRCS))
TURBINE_BENCH_SRCS := $(filter %_bench.c,$(TURBINE_ALL_SRCS))
TURBINE_FUZZ_SRCS := $(filter %_fuzz.c,$(TURBINE_ALL_SRCS))
TURBINE_TESTS := $(patsubst %.c,$(BUILD)/test/%,$(notdir $(TURBINE_TEST_SRCS)))
TURBINE_FUZZ_REPLAYS := $(patsubst %.c,$(BUILD)/test/%_test,$(notdir $(TURBINE_FUZZ_SRCS)))
TURBINE_BENCHES := $(patsubst %.c,$(BUILD)/bench/%,$(notdir $(TURBINE_BENCH_SRCS)))
TURBINE_FUZZERS := $(patsubst %.c,build/fuzz/%,$(notdir $(TURBINE_FUZZ_SRCS)))
LIBTURBINE_A := $(BUILD)/libturbine.a
TURBINE_CFLAGS := -Iturbine/include -Iturbine/src
# libinih for the broker's config file (pkg-config inih; plain -linih before deps are in),
# libhttp-parser for the broker's admin HTTP port (no pkg-config file in Debian)
TURBINE_LIBS := -lisal $(shell pkg-config --libs inih 2>/dev/null || echo -linih) -lhttp_parser
TURBINE_TEST_LIBS_batch_test := -lrdkafka
TURBINE_TEST_LIBS_bench_progress_test := -lutil # openpty, login_tty (in libc from glibc 2.34)
TURBINE_HEADER_CHECKS := $(patsubst turbine/include/turbine/%.h,$(BUILD)/checkheaders/turbine/%.ok,\
                         $(wildcard turbine/include/turbine/*.h))

vpath %_test.c $(TURBINE_DIRS)
vpath %_bench.c $(TURBINE_DIRS)
vpath %_fuzz.c $(TURBINE_DIRS)

# The turbine command (turbine/cmd/*.c, outside turbine/src so it is not in libturbine.a): built
# with make, make tests (the broker tests spawn it) and make run.
TURBINE_CMD_SRCS := $(wildcard turbine/cmd/*.c)
TURBINE_CMD_OBJS := $(patsubst %,$(BUILD)/obj/%.o,$(TURBINE_CMD_SRCS))
TURBINE_BIN := $(BUILD)/turbine

.PHONY: fuzz turbine soak
all: turbine
lib: $(LIBTURBINE_A)
tests: $(TURBINE_TESTS) $(TURBINE_FUZZ_REPLAYS) $(TURBINE_BIN)
benches: $(TURBINE_BENCHES)
checkheaders: $(TURBINE_HEADER_CHECKS)
turbine: $(LIBTURBINE_A) $(TURBINE_BIN) $(TURBINE_TESTS) $(TURBINE_FUZZ_REPLAYS) $(TURBINE_BENCHES)
fuzz: $(TURBINE_FUZZERS)

$(TURBINE_OBJS) $(TURBINE_CMD_OBJS): ALL_CFLAGS += $(TURBINE_CFLAGS)

$(TURBINE_BIN): $(TURBINE_CMD_OBJS) $(LIBTURBINE_A) $(LIBLOOM_A) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $(TURBINE_CMD_OBJS) $(LIBTURBINE_A) \
	    $(LIBLOOM_A) $(TURBINE_LIBS) $(LIBS)

$(LIBTURBINE_A): $(TURBINE_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	$(Q)$(call say,AR,$@)ar rcs $@ $^

$(TURBINE_TESTS): $(BUILD)/test/%: %.c $(HARNESS_OBJS) $(LIBTURBINE_A) $(LIBLOOM_A) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_CFLAGS) $(TURBINE_CFLAGS) $(ALL_LDFLAGS) -o $@ $< \
	    $(HARNESS_OBJS) $(LIBTURBINE_A) $(LIBLOOM_A) $(TURBINE_LIBS) $(LIBS) $(TURBINE_TEST_LIBS_$*)

$(TURBINE_FUZZ_REPLAYS): $(BUILD)/test/%_test: %.c $(LIBTURBINE_A) $(LIBLOOM_A) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_CFLAGS) $(TURBINE_CFLAGS) -DTURBINE_FUZZ_REPLAY \
	    $(ALL_LDFLAGS) -o $@ $< $(LIBTURBINE_A) $(LIBLOOM_A) $(TURBINE_LIBS) $(LIBS)

$(TURBINE_BENCHES): $(BUILD)/bench/%: %.c $(BENCHLIB_OBJS) $(LIBTURBINE_A) $(LIBLOOM_A) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_CFLAGS) $(TURBINE_CFLAGS) -Ibench $(ALL_LDFLAGS) -o $@ $< \
	    $(BENCHLIB_OBJS) $(LIBTURBINE_A) $(LIBLOOM_A) $(TURBINE_LIBS) $(LIBS)

# The broker benchmark (bench/peers/broker_bench.c): starts build/$(MODE)/turbine and its ceiling,
# bench/peers/sink_uring, on CPU 0 and drives them from CPU 1 with turbine's protocol codec.
BROKER_BENCH := $(BUILD)/bench/broker_bench
benches: $(BROKER_BENCH)
$(BROKER_BENCH): bench/peers/broker_bench.c $(BENCHLIB_OBJS) $(LIBTURBINE_A) $(LIBLOOM_A) \
    | $(PEERS) $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,CCLD,$@)$(CC) $(ALL_CFLAGS) $(TURBINE_CFLAGS) -Ibench $(ALL_LDFLAGS) -o $@ $< \
	    $(BENCHLIB_OBJS) $(LIBTURBINE_A) $(LIBLOOM_A) $(TURBINE_LIBS) $(LIBS)

# libFuzzer targets: clang with its fuzzer runtime, ASan and UBSan, the library sources
# compiled in (instrumented). Run e.g. build/fuzz/batch_fuzz turbine/src/log/fuzz_corpus/batch
FUZZ_CC := clang
FUZZ_CFLAGS := -std=gnu17 -g -O1 -D_GNU_SOURCE -fno-omit-frame-pointer \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
               -Wall -Wextra -Werror -Wno-unused-parameter $(TURBINE_CFLAGS) -Itest
# (loom's sources too: the recovery target runs the log on a loom core and a simulated disk)
build/fuzz/%: %.c $(TURBINE_SRCS) $(LOOM_SRCS) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(Q)$(call say,FUZZ,$@)$(FUZZ_CC) $(FUZZ_CFLAGS) -Iloom/include -Iloom/src -pthread -o $@ $< \
	    $(TURBINE_SRCS) $(LOOM_SRCS) $(TURBINE_LIBS) $(LIBS)

$(TURBINE_HEADER_CHECKS): $(BUILD)/checkheaders/turbine/%.ok: turbine/include/turbine/%.h
	@mkdir -p $(dir $@)
	@echo '#include "turbine/$*.h"' | $(CC) -std=gnu17 -Wall -Wextra -Werror -Iturbine/include \
	    -Iloom/include -x c -fsyntax-only - && touch $@
# make soak: the storage and broker crash tests at length and 10,000 broker connections
# (release; not part of make test).
soak: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release build/release/test/crash_test \
	    build/release/test/simcrash_test build/release/test/broker_crash_test build/release/turbine \
	    build/release/test/conn1000_test
	@start=$$(date +%s); CRASH_CYCLES=5000 build/release/test/crash_test && \
	    BROKER_CRASH_CYCLES=1000 build/release/test/broker_crash_test && \
	    CONN_COUNT=10000 build/release/test/conn1000_test && \
	    SIMCRASH_BASE=random SIMCRASH_SEEDS=10000 build/release/test/simcrash_test 2>/dev/null && \
	    echo "soak: passed in $$(( $$(date +%s) - start )) s" || \
	    { echo "soak: FAILED after $$(( $$(date +%s) - start )) s"; exit 1; }
# ---- end of turbine ----

# ---- install ----
# make install [PREFIX=/usr/local] [DESTDIR=]: the release build's command, libraries, public
# headers, pkg-config files (generated for PREFIX), the man page and, as examples only, the
# systemd unit under share/doc/turbine. It builds the release artifacts
# first; INSTALL_NO_BUILD=1 only copies them (test/install_test.c, which runs while make test
# may still be building other modes). make uninstall removes what install put there.
PREFIX ?= /usr/local
VERSION := 0.1.0
INSTALL ?= install
INST_BUILD := build/release
INST_BIN := $(DESTDIR)$(PREFIX)/bin
INST_LIB := $(DESTDIR)$(PREFIX)/lib
INST_INC := $(DESTDIR)$(PREFIX)/include
INST_MAN1 := $(DESTDIR)$(PREFIX)/share/man/man1
INST_DOC := $(DESTDIR)$(PREFIX)/share/doc/turbine
INST_LIBS := $(INST_BUILD)/libloom.a $(INST_BUILD)/libturbine.a
# pkg-config: the Libs.private are the Makefile's own link flags, what linking the static
# libraries needs: LIBS for libloom, TURBINE_LIBS for libturbine (static only, so a program
# using it links with pkg-config --static --libs turbine). They are -l flags, not
# Requires.private: with --static, hwloc.pc would add its own private -ludev, which only
# libudev-dev provides and a link against the shared libhwloc does not need.
PC_HEAD = 'prefix=$(PREFIX)' 'exec_prefix=$${prefix}' 'libdir=$${exec_prefix}/lib' \
          'includedir=$${prefix}/include' ''
LOOM_PC = $(PC_HEAD) 'Name: loom' 'Description: thread-per-core io_uring runtime' \
          'Version: $(VERSION)' 'Cflags: -I$${includedir} -pthread' \
          'Libs: -L$${libdir} -lloom -pthread' 'Libs.private: $(strip $(LIBS))'
TURBINE_PC = $(PC_HEAD) 'Name: turbine' 'Description: Kafka-like log broker: client and codecs' \
             'Version: $(VERSION)' 'Requires: loom' 'Cflags: -I$${includedir}' \
             'Libs: -L$${libdir} -lturbine' 'Libs.private: $(strip $(TURBINE_LIBS))'

.PHONY: install uninstall
install:
ifndef INSTALL_NO_BUILD
	@$(MAKE) --no-print-directory MODE=release lib build/release/turbine
endif
	@for f in $(INST_BUILD)/turbine $(INST_LIBS); do \
	    test -f $$f || { echo "make install: $$f is not built (make MODE=release)" >&2; exit 1; }; \
	done
	@$(call say,INSTALL,$(DESTDIR)$(PREFIX))true
	$(Q)$(INSTALL) -d $(INST_BIN) $(INST_LIB)/pkgconfig $(INST_INC)/loom $(INST_INC)/turbine \
	    $(INST_MAN1) $(INST_DOC)
	$(Q)$(INSTALL) -m 755 $(INST_BUILD)/turbine $(INST_BIN)/turbine
	$(Q)$(INSTALL) -m 644 $(INST_LIBS) $(INST_LIB)/
	$(Q)if [ -f $(INST_BUILD)/libloom.so ]; then \
	    $(INSTALL) -m 755 $(INST_BUILD)/libloom.so $(INST_LIB)/libloom.so; fi
	$(Q)$(INSTALL) -m 644 loom/include/loom/*.h $(INST_INC)/loom/
	$(Q)$(INSTALL) -m 644 turbine/include/turbine/*.h $(INST_INC)/turbine/
	$(Q)printf '%s\n' $(LOOM_PC) >$(INST_LIB)/pkgconfig/loom.pc
	$(Q)printf '%s\n' $(TURBINE_PC) >$(INST_LIB)/pkgconfig/turbine.pc
	$(Q)$(INSTALL) -m 644 docs/man/turbine.1 $(INST_MAN1)/turbine.1
	$(Q)$(INSTALL) -m 644 docs/systemd/turbine.service $(INST_DOC)/turbine.service

uninstall:
	rm -f $(INST_BIN)/turbine $(INST_LIB)/libloom.a $(INST_LIB)/libloom.so \
	    $(INST_LIB)/libturbine.a $(INST_LIB)/pkgconfig/loom.pc $(INST_LIB)/pkgconfig/turbine.pc \
	    $(INST_MAN1)/turbine.1 $(INST_DOC)/turbine.service
	rm -rf $(INST_INC)/loom $(INST_INC)/turbine
	-rmdir $(INST_DOC) 2>/dev/null
# ---- end of install ----

# make test: release runs every test; asan the unit tests at reduced scale; tsan the tests
# tagged cross-thread (a "LOOM_TEST_TAGS: tsan" line in the source).
test: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release tests
	@$(MAKE) --no-print-directory MODE=asan tests
	@$(MAKE) --no-print-directory MODE=tsan tests
	@test/run.sh release asan tsan

test-valgrind: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=debug tests
	@test/run.sh valgrind

bench: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release benches
	@scripts/bench.sh

run: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release build/release/turbine
	@scripts/run.sh $(ARGS)

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)
check-format:
	@clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
