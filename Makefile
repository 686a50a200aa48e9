# imds: one non-recursive Makefile; every output goes under build/.
BUILD    ?= build
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
PYTHON   ?= /usr/bin/python3
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

COMMON_CFLAGS := -std=gnu11 -g -Wall -Wextra -Werror -MMD -MP -D_GNU_SOURCE \
	-Iinclude -Iuser -I$(BUILD) -I$(LLHTTP_INC)
CFLAGS   ?= -O2
SAN_FLAGS := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDLIBS   := -lbpf -luring -ljansson -lcrypto -lz -lelf -lpthread
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -MMD -MP \
	-Iinclude -I$(BUILD)

# Programs: one main file each; every other user/*.c is a library object.
PROGS     := imdsd imds-loadmap imds-storm
PROG_SRCS := $(addprefix user/,$(addsuffix .c,$(PROGS)))
LIB_SRCS  := $(filter-out $(PROG_SRCS),$(wildcard user/*.c))
LLHTTP_SRCS := $(wildcard $(LLHTTP_SRC)/*.c)

LIB_OBJS     := $(patsubst user/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
SAN_LIB_OBJS := $(patsubst user/%.c,$(BUILD)/san/%.o,$(LIB_SRCS))
LLHTTP_OBJS  := $(patsubst $(LLHTTP_SRC)/%.c,$(BUILD)/llhttp/%.o,$(LLHTTP_SRCS))
PROG_BINS    := $(addprefix $(BUILD)/,$(PROGS))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

BPF_OBJ  := $(BUILD)/imds.bpf.o
SKEL     := $(BUILD)/imds.skel.h

.PHONY: all deps demo test unit-test system-test clean bench e2e e2e-cloudinit
all: $(PROG_BINS)

deps:
	./scripts/install-deps.sh

$(BUILD)/vmlinux.h:
	@mkdir -p $(@D)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BPF_OBJ): bpf/imds.bpf.c $(BUILD)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(SKEL): $(BPF_OBJ)
	$(BPFTOOL) gen skeleton $< name imds_bpf > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/%.o: user/%.c | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/san/%.o: user/%.c | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(SAN_FLAGS) -c $< -o $@

# Third-party parser, compiled from Debian's node-llhttp sources in place.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) -O2 -g -w -I$(LLHTTP_INC) -c $< -o $@

$(BUILD)/%: user/%.c $(LIB_OBJS) $(LLHTTP_OBJS) | $(SKEL)
	$(CC) $(COMMON_CFLAGS) $(CFLAGS) $< $(LIB_OBJS) $(LLHTTP_OBJS) -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(SAN_LIB_OBJS) $(LLHTTP_OBJS) | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(SAN_FLAGS) $< $(SAN_LIB_OBJS) $(LLHTTP_OBJS) -o $@ $(LDLIBS) -lcmocka

unit-test: $(UNIT_BINS)
	./scripts/run-tests.sh --unit $(UNIT_BINS)

system-test: all
	./scripts/run-tests.sh --system

# The one test command (README, .ci/run): unit and system tests, one summary line.
test: deps
	$(MAKE) all $(UNIT_BINS)
	./scripts/run-tests.sh --unit $(UNIT_BINS) --system --e2e

demo:
	./scripts/install-deps.sh
	$(MAKE) all
	./scripts/demo.sh

# Storms against imdsd and nginx side by side (docs/performance.md).
bench: deps
	$(MAKE) all
	./scripts/bench.sh $(BENCH_ARGS)

# QEMU guests on TAP devices (tests/e2e, docs/e2e.md).
e2e: deps
	$(MAKE) all
	./scripts/e2e.sh

e2e-cloudinit: deps
	$(MAKE) all
	./scripts/e2e-cloudinit.sh

clean:
	rm -rf $(BUILD)

-include $(wildcard $(BUILD)/*.d $(BUILD)/obj/*.d $(BUILD)/san/*.d $(BUILD)/tests/*.d)
