# obs — build, run, test. `make V=1` shows the commands.
OUT      := build
ARCH     := $(shell uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
TRIPLET  := $(shell gcc -dumpmachine)
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
CFLAGS   ?= -O2 -g
CFLAGS   += -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
	    -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuser -I$(OUT)
LDLIBS   := -lbpf -lelf -lz -lm -lpthread -lcurl -lprotobuf-c
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

LIB_SRCS := user/loops.c user/sentry.c user/sender.c user/errors.c user/events.c user/otlp.c user/otlp_encode.c user/span.c $(OUT)/otlp.pb-c.c user/sampler.c user/trust.c user/service.c user/metrics.c user/http1.c user/conn.c user/record.c user/store.c user/json.c user/loader.c \
	    user/pipeline.c user/route.c user/ids.c user/api.c user/log.c
LIB_OBJS := $(patsubst user/%.c,$(OUT)/%.o,$(filter user/%,$(LIB_SRCS))) $(OUT)/otlp.pb-c.o
UNIT_TESTS := $(patsubst tests/unit/%.c,$(OUT)/%,$(wildcard tests/unit/test_*.c))

.PHONY: all clean deps run test unit e2e bench fuzz
.DELETE_ON_ERROR:

all: $(OUT)/obsd $(OUT)/obsctl

$(OUT):
	$(Q)mkdir -p $@

$(OUT)/obs.bpf.o: bpf/obs.bpf.c include/obs.h vmlinux/vmlinux.h | $(OUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUT)/obs.skel.h: $(OUT)/obs.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name obs_bpf > $@

$(OUT)/loader.o: $(OUT)/obs.skel.h

$(OUT)/otlp.pb-c.c $(OUT)/otlp.pb-c.h: proto/otlp.proto | $(OUT)
	$(call msg,PROTOC,$@)
	$(Q)protoc-c --proto_path=proto --c_out=$(OUT) $<

$(OUT)/otlp.pb-c.o: $(OUT)/otlp.pb-c.c
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -Wall -Werror -I$(OUT) -c $< -o $@

$(OUT)/otlp_encode.o $(OUT)/otlp.o: $(OUT)/otlp.pb-c.h

$(OUT)/%.o: user/%.c $(wildcard user/*.h) include/obs.h | $(OUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(OUT)/libobs.a: $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)ar rcs $@ $^

$(OUT)/obsd: $(OUT)/obsd.o $(OUT)/libobs.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(OUT)/obsctl: $(OUT)/obsctl.o $(OUT)/libobs.a
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

# Unit tests: each tests/unit/test_X.c links the pure modules, under ASan+UBSan.
UNIT_SRCS := user/errors.c user/events.c user/span.c user/sampler.c user/trust.c user/service.c user/http1.c user/conn.c user/record.c user/store.c user/json.c user/route.c \
	     user/ids.c user/log.c
$(OUT)/test_%: tests/unit/test_%.c $(UNIT_SRCS) $(wildcard user/*.h) | $(OUT)
	$(call msg,CC-SAN,$@)
	$(Q)$(CLANG) -O1 -g $(SAN) -Wall -Wextra -Werror -Wno-unused-parameter \
		-Wno-missing-field-initializers -std=gnu11 -D_GNU_SOURCE -Iinclude -Iuser \
		$< $(UNIT_SRCS) -o $@

deps:
	$(Q)bash scripts/deps.sh

run: deps all
	$(OUT)/obsd

unit: $(UNIT_TESTS)
	$(Q)for t in $(UNIT_TESTS); do echo "  UNIT     $$t"; $$t || exit 1; done

e2e: all
	$(Q)PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/e2e

test: deps
	$(Q)$(MAKE) --no-print-directory all unit
	$(Q)$(MAKE) --no-print-directory e2e

clean:
	$(Q)rm -rf $(OUT)
