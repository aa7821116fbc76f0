# obs — build, run, test. `make V=1` shows the commands.
OUT      := build
ARCH     := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
TRIPLET  := $(shell gcc -dumpmachine)
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
CFLAGS   ?= -O3 -g -flto=auto
CFLAGS   += -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
	    -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuser -I$(OUT)
LDLIBS   := -lbpf -lelf -lz -lm -lpthread -lcurl -lprotobuf-c -lyaml -lnghttp2
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -Wno-gnu-variable-sized-type-not-at-end \
	      -Ivmlinux -Iinclude -I/usr/include/$(TRIPLET)
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

# userspace, one folder per stage of the flow, lowest first (docs/design.md):
# a folder includes only from itself and the folders before it (make layers).
LAYERS   := base capture proto conn request sinks daemon cli
OBJ      := $(OUT)/obj
LIB_SRCS := $(foreach d,base capture proto conn request sinks,$(wildcard user/$(d)/*.c)) \
	    $(filter-out user/daemon/obsd.c,$(wildcard user/daemon/*.c))
LIB_OBJS := $(patsubst user/%.c,$(OBJ)/%.o,$(LIB_SRCS)) $(OUT)/otlp.pb-c.o
UNIT_TESTS := $(patsubst tests/unit/%.c,$(OUT)/%,$(wildcard tests/unit/test_*.c))

.PHONY: all clean deps run test unit e2e bench fuzz layers
.DELETE_ON_ERROR:

all: $(OUT)/obsd $(OUT)/obsctl

$(OUT):
	$(Q)mkdir -p $@

$(OUT)/obs.bpf.o: bpf/obs.bpf.c bpf/sysregs.h bpf/client.bpf.h include/obs.h vmlinux/vmlinux.h | $(OUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUT)/obs.skel.h: $(OUT)/obs.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name obs_bpf > $@

$(OBJ)/capture/loader.o: $(OUT)/obs.skel.h

$(OUT)/otlp.pb-c.c $(OUT)/otlp.pb-c.h: proto/otlp.proto | $(OUT)
	$(call msg,PROTOC,$@)
	$(Q)protoc-c --proto_path=proto --c_out=$(OUT) $<

$(OUT)/otlp.pb-c.o: $(OUT)/otlp.pb-c.c
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -Wall -Werror -I$(OUT) -c $< -o $@

$(patsubst %,$(OBJ)/sinks/%.o,otlp_encode otlp otlp_metrics otlp_logs): $(OUT)/otlp.pb-c.h

# -MMD: each object's header dependencies come from the compiler ($(OBJ)/*/*.d)
$(OBJ)/%.o: user/%.c | $(OUT)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(wildcard $(OBJ)/*/*.d)

$(OUT)/libobs.a: $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)ar rcs $@ $^

$(OUT)/obsd: $(OBJ)/daemon/obsd.o $(OUT)/libobs.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

# obsctl top draws with ncurses and reads obsd's /api/stats with json-c; obsd
# links neither.
CTL_OBJS := $(patsubst user/%.c,$(OBJ)/%.o,$(wildcard user/cli/*.c))
$(OUT)/obsctl: $(CTL_OBJS) $(OUT)/libobs.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -lncursesw -ljson-c -o $@

# Unit tests: each tests/unit/test_X.c links the pure modules, under ASan+UBSan.
UNIT_SRCS := $(addprefix user/,base/lhist.c base/json.c base/ids.c base/log.c base/cgroup.c \
	     proto/http1.c proto/h2.c conn/conn.c conn/record.c \
	     request/errors.c request/logs.c request/events.c request/span.c request/sampler.c \
	     request/trust.c request/service.c request/route.c request/client.c request/client_span.c \
	     base/counters.c sinks/store.c daemon/config.c daemon/options.c \
	     cli/top_model.c cli/top_loops.c)
TEST_HDRS := tests/unit/check.h tests/unit/json_valid.h	# shared by unit tests and fuzzers
$(OUT)/test_%: tests/unit/test_%.c $(TEST_HDRS) $(UNIT_SRCS) $(wildcard user/*/*.h) | $(OUT)
	$(call msg,CC-SAN,$@)
	$(Q)$(CLANG) -O1 -g $(SAN) -Wall -Wextra -Werror -Wno-unused-parameter \
		-Wno-missing-field-initializers -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuser \
		$< $(UNIT_SRCS) -lyaml -lnghttp2 -o $@

deps:
	$(Q)bash scripts/deps.sh

run: deps all
	$(OUT)/obsd

unit: $(UNIT_TESTS)
	$(Q)for t in $(UNIT_TESTS); do echo "  UNIT     $$t"; $$t || exit 1; done

e2e: all
	$(Q)PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/e2e

# Cost of observing (figures only, ~10 min, as root): see docs/bench.md.
bench: all $(OUT)/bench-floor $(OUT)/floor.bpf.o
	$(Q)bash scripts/bench.sh

# The kernel's floor: the primitives' cost, measured alone (bench section 3b).
$(OUT)/floor.bpf.o: scripts/bench/floor.bpf.c vmlinux/vmlinux.h | $(OUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUT)/bench-floor: scripts/bench/floor.c | $(OUT)
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -std=gnu11 $< -o $@ -lbpf

# Fuzzing (docs/robustness.md): each libFuzzer harness tests/fuzz/fuzz_X.c runs
# FUZZ_SECONDS from its seeds in tests/fuzz/corpus/X, with tests/fuzz/X.dict if
# there is one; new inputs are kept in $(OUT)/fuzz/X/corpus. Any crash, leak or
# failed check fails the target once all have run. Short CI pass:
# make fuzz FUZZ_SECONDS=10.
FUZZ_SECONDS ?= 60
FUZZERS  := http1 conn h2 ids route json api diff_http1 logs
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	       -fno-omit-frame-pointer -Wall -Wextra -Werror -Wno-unused-parameter \
	       -Wno-missing-field-initializers -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuser -Itests/unit
FUZZ_SRCS_http1 := user/proto/http1.c
FUZZ_SRCS_conn  := user/conn/conn.c user/proto/http1.c user/proto/h2.c user/conn/record.c user/base/json.c user/base/ids.c -lnghttp2
FUZZ_SRCS_h2    := user/proto/h2.c -lnghttp2
FUZZ_SRCS_ids   := user/base/ids.c user/request/trust.c
FUZZ_SRCS_route := user/request/route.c
FUZZ_SRCS_json  := user/base/json.c
FUZZ_SRCS_logs  := user/request/logs.c
FUZZ_SRCS_api   := user/daemon/api.c user/base/json.c user/base/log.c
FUZZ_SRCS_diff_http1 := user/proto/http1.c -lhttp_parser

$(OUT)/fuzz_%: tests/fuzz/fuzz_%.c $(TEST_HDRS) $(wildcard user/*/*.c user/*/*.h) include/obs.h | $(OUT)
	$(call msg,CC-FUZZ,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $< $(FUZZ_SRCS_$*) -o $@

fuzz: $(addprefix $(OUT)/fuzz_,$(FUZZERS))
	$(Q)failed=; for f in $(FUZZERS); do \
		d=$(OUT)/fuzz/$$f; mkdir -p $$d/corpus; dict=; seeds=; \
		if [ -f tests/fuzz/$$f.dict ]; then dict=-dict=tests/fuzz/$$f.dict; fi; \
		if [ -d tests/fuzz/corpus/$$f ]; then seeds=tests/fuzz/corpus/$$f; fi; \
		echo "  FUZZ     $$f ($(FUZZ_SECONDS) s, log $$d/log)"; \
		if ! $(if $(FUZZ_CONN_KNOWN),FUZZ_CONN_KNOWN=$(FUZZ_CONN_KNOWN)) $(OUT)/fuzz_$$f \
			-max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
			-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$$d/ \
			$$dict $$d/corpus $$seeds >$$d/log 2>&1; then \
			failed="$$failed $$f"; grep -E -B2 -A30 'ERROR|fuzz_[a-z0-9_]+:' $$d/log | head -60 || \
				tail -20 $$d/log; \
		fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: FAILED:$$failed (reproducers: $(OUT)/fuzz/<name>/crash-*)"; exit 1; fi

# The layering rule: user/<folder>/ includes only from folders at or below it
# in LAYERS.
layers:
	$(Q)bash scripts/layers.sh $(LAYERS)

test: deps
	$(Q)$(MAKE) --no-print-directory layers all unit
	$(Q)$(MAKE) --no-print-directory e2e

clean:
	$(Q)rm -rf $(OUT)
