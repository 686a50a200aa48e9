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
# libxml2, for the libvirt layer only (the hook parses domain XML).
XML_CFLAGS := $(shell pkg-config --cflags libxml-2.0)
XML_LIBS   := $(shell pkg-config --libs libxml-2.0)
COMMON_CFLAGS += $(XML_CFLAGS)
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -MMD -MP \
	-Iinclude -I$(BUILD)

# user/ is layered (docs/design.md, each folder's README.md): every folder but
# cmd/ is one static library, and each program links only the layers it
# uses, listed from the top down so the linker resolves them in one pass.
# scripts/check-layers.py (run by make test) keeps includes inside the same rules.
LAYERS := lib compile store control http serve ports libvirt storm
PROGS  := imdsd imds-loadmap imds-storm imds-libvirt-hook
imdsd_LAYERS        := serve ports http store lib
imds-loadmap_LAYERS := control compile ports store lib
# Issue 13: imds-loadmap's commands beyond its main file; libcurl for
# `sync`'s etcd client (user/control/etcd.c), linked into imds-loadmap only.
imds-loadmap_OBJS   := $(patsubst user/%.c,$(BUILD)/obj/%.o,$(wildcard user/cmd/loadmap_*.c))
imds-loadmap_LDLIBS := $(shell pkg-config --libs libcurl)
imds-storm_LAYERS   := storm compile store lib
imds-libvirt-hook_LAYERS := libvirt lib
imds-libvirt-hook_LDLIBS := $(XML_LIBS)
imds-storm_EXTRA := $(BUILD)/lib/libllhttp.a
# The llhttp parser belongs to the http layer.
imdsd_EXTRA := $(BUILD)/lib/libllhttp.a

# The version's one place is the VERSION file (docs/operations.md,
# "Versions"): cli.c compiles it in for every program's --version, and
# make deb writes it into the package's changelog.
VERSION := $(shell cat VERSION)
CLI_OBJS := $(BUILD)/obj/lib/cli.o $(BUILD)/san/lib/cli.o $(BUILD)/fuzz/obj/lib/cli.o

layer_srcs = $(wildcard user/$(1)/*.c)
layer_lib  = $(BUILD)/lib/libimds_$(1).a
san_lib    = $(BUILD)/san/libimds_$(1).a
LLHTTP_SRCS := $(wildcard $(LLHTTP_SRC)/*.c)
LLHTTP_OBJS := $(patsubst $(LLHTTP_SRC)/%.c,$(BUILD)/llhttp/%.o,$(LLHTTP_SRCS))
PROG_BINS   := $(addprefix $(BUILD)/,$(PROGS))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

BPF_OBJ  := $(BUILD)/imds.bpf.o
SKEL     := $(BUILD)/imds.skel.h

.PHONY: all deps demo test unit-test system-test clean bench e2e e2e-cloudinit e2e-cloudinit-libvirt e2e-cloudinit-ipv6
all: $(PROG_BINS)

$(CLI_OBJS): VERSION
$(CLI_OBJS): COMMON_CFLAGS += -DIMDS_VERSION='"$(VERSION)"'

deps:
	./scripts/install-deps.sh

$(BUILD)/vmlinux.h:
	@mkdir -p $(@D)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BPF_OBJ): bpf/imds.bpf.c $(BUILD)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(SKEL): $(BPF_OBJ)
	$(BPFTOOL) gen skeleton $< name imds_bpf > $@.tmp && mv $@.tmp $@

# CPPFLAGS and LDFLAGS: empty here; dpkg-buildflags' hardening in make deb.
$(BUILD)/obj/%.o: user/%.c | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/san/%.o: user/%.c | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(SAN_FLAGS) -c $< -o $@

# Third-party parser, compiled from Debian's node-llhttp sources in place.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) -O2 -g -w -I$(LLHTTP_INC) -c $< -o $@

$(BUILD)/lib/libllhttp.a: $(LLHTTP_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

define layer_rules
$(call layer_lib,$(1)): $(patsubst user/%.c,$(BUILD)/obj/%.o,$(call layer_srcs,$(1)))
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
$(call san_lib,$(1)): $(patsubst user/%.c,$(BUILD)/san/%.o,$(call layer_srcs,$(1)))
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rules,$(l))))

define prog_rule
$(BUILD)/$(1): user/cmd/$(1).c $($(1)_OBJS) $(foreach l,$($(1)_LAYERS),$(call layer_lib,$(l))) $($(1)_EXTRA) | $(SKEL)
	$(CC) $(COMMON_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) $$< $($(1)_OBJS) $(foreach l,$($(1)_LAYERS),$(call layer_lib,$(l))) $($(1)_EXTRA) -o $$@ $(LDLIBS) $($(1)_LDLIBS)
endef
$(foreach p,$(PROGS),$(eval $(call prog_rule,$(p))))

# Unit tests may reach every layer; a group lets the archives come in any order.
SAN_LIBS := $(foreach l,$(LAYERS),$(call san_lib,$(l)))
$(BUILD)/tests/%: tests/unit/%.c $(SAN_LIBS) $(BUILD)/lib/libllhttp.a | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(SAN_FLAGS) $< -Wl,--start-group $(SAN_LIBS) $(BUILD)/lib/libllhttp.a -Wl,--end-group \
		-o $@ $(LDLIBS) $(XML_LIBS) -lcmocka

# libFuzzer targets (tests/fuzz, docs/testing.md "Fuzzing"): the layers they
# reach, rebuilt with clang and coverage into build/fuzz/obj, llhttp too.
FUZZ_TARGETS := route vmconf tree token bpf
FUZZ_BINS    := $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS))
FUZZ_LAYERS  := http compile lib
FUZZ_SAN     := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := $(COMMON_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Itests/unit \
	-DFUZZ_DIR='"$(CURDIR)/tests/fuzz"'
FUZZ_LIBS    := $(foreach l,$(FUZZ_LAYERS),$(BUILD)/fuzz/libimds_$(l).a) $(BUILD)/fuzz/libllhttp.a
FUZZ_SECONDS ?= 60

$(BUILD)/fuzz/obj/%.o: user/%.c | $(SKEL)
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@
$(BUILD)/fuzz/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -g -w -I$(LLHTTP_INC) -c $< -o $@
$(BUILD)/fuzz/libllhttp.a: $(patsubst $(LLHTTP_SRC)/%.c,$(BUILD)/fuzz/llhttp/%.o,$(LLHTTP_SRCS))
	rm -f $@ && ar rcs $@ $^
define fuzz_layer_rule
$(BUILD)/fuzz/libimds_$(1).a: $(patsubst user/%.c,$(BUILD)/fuzz/obj/%.o,$(call layer_srcs,$(1)))
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach l,$(FUZZ_LAYERS),$(eval $(call fuzz_layer_rule,$(l))))
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIBS) | $(SKEL)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< -Wl,--start-group $(FUZZ_LIBS) -Wl,--end-group \
		-o $@ $(LDLIBS)
# Seeds that are built, not written (trees, tokens, frames): tests/fuzz/seeds.c.
$(BUILD)/fuzz/fuzz-seeds: tests/fuzz/seeds.c $(SAN_LIBS) $(BUILD)/lib/libllhttp.a | $(SKEL)
	$(CC) $(COMMON_CFLAGS) $(SAN_FLAGS) -Itests/unit $< -Wl,--start-group $(SAN_LIBS) \
		$(BUILD)/lib/libllhttp.a -Wl,--end-group -o $@ $(LDLIBS) $(XML_LIBS)

.PHONY: fuzz fuzz-seeds san-bin san-test
fuzz: $(FUZZ_BINS)
	./scripts/fuzz.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)
fuzz-seeds: $(BUILD)/fuzz/fuzz-seeds
	$< tests/fuzz/corpus

# imdsd with ASan+UBSan (LSan at exit) for the system tests under load:
# IMDS_IMDSD points the lab at it (scripts/san-test.sh).
$(BUILD)/san-bin/imdsd: user/cmd/imdsd.c $(foreach l,$(imdsd_LAYERS),$(call san_lib,$(l))) $(imdsd_EXTRA) | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(SAN_FLAGS) $< $(foreach l,$(imdsd_LAYERS),$(call san_lib,$(l))) $(imdsd_EXTRA) \
		-o $@ $(LDLIBS)
san-bin: $(BUILD)/san-bin/imdsd
san-test: all $(BUILD)/san-bin/imdsd
	IMDS_BUILD=$(BUILD) IMDS_IMDSD=$(BUILD)/san-bin/imdsd ./scripts/san-test.sh

# Structure checks: the layer rules hold, and the checker still catches what it should.
CHECKS := scripts/check-layers.py scripts/check-layers-self-test.sh scripts/check-bpf-headers.sh

unit-test: $(UNIT_BINS)
	./scripts/run-tests.sh --check $(CHECKS) --unit $(UNIT_BINS)

system-test: all
	./scripts/run-tests.sh --system

# The one test command (README, .ci/run): unit and system tests, one summary line.
test: deps
	$(MAKE) all $(UNIT_BINS) $(FUZZ_BINS)
	./scripts/run-tests.sh --check $(CHECKS) scripts/fuzz-smoke.sh --unit $(UNIT_BINS) --system --e2e

demo:
	./scripts/install-deps.sh
	$(MAKE) all
	./scripts/demo.sh

# Storms against imdsd, nginx and the null responder side by side
# (docs/performance.md).  The null responder (issue 15) is the cost floor:
# a fixed 200 for every request; built with the programs, since a system
# test checks its framing.
NULL_RESPONDER := $(BUILD)/bench/null_responder
$(NULL_RESPONDER): tests/bench/null_responder.c
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(CFLAGS) $< -luring -lpthread -o $@
all: $(NULL_RESPONDER)

bench: deps
	$(MAKE) all
	./scripts/bench.sh $(BENCH_ARGS)

# Arena fragmentation under 1,000,000 random updates over 1,000 VMs of mixed
# sizes (issue 13; docs/performance.md, "Arena fragmentation").
BENCH_ARENA := $(BUILD)/bench/bench_arena
$(BENCH_ARENA): tests/bench/bench_arena.c $(call layer_lib,store) | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(CFLAGS) $< $(call layer_lib,store) -o $@
.PHONY: bench-arena
bench-arena: $(BENCH_ARENA)
	$(BENCH_ARENA) 1000000 1000 16384
	$(BENCH_ARENA) 1000000 1000 12288

# What the data plane's programs cost per packet, by kind of packet, run
# with BPF_PROG_TEST_RUN (issue 15; docs/performance.md, "Where a
# connection's time goes").
BENCH_BPF := $(BUILD)/bench/bench_bpf
$(BENCH_BPF): tests/bench/bench_bpf.c tests/unit/bpf_harness.h tests/unit/bpf_frames.h | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(CFLAGS) $< -o $@ $(LDLIBS)
.PHONY: bench-bpf
bench-bpf: $(BENCH_BPF)
	$(BENCH_BPF)

# imdsd's user-space work per keep-alive request (parse, route, token,
# response), without sockets (issue 15; docs/performance.md, "The request
# path's own code").
BENCH_ROUTE := $(BUILD)/bench/bench_route
$(BENCH_ROUTE): tests/bench/bench_route.c $(call layer_lib,http) $(call layer_lib,lib) $(BUILD)/lib/libllhttp.a | $(SKEL)
	@mkdir -p $(@D)
	$(CC) $(COMMON_CFLAGS) $(CFLAGS) $< $(call layer_lib,http) $(call layer_lib,lib) $(BUILD)/lib/libllhttp.a -o $@ $(LDLIBS)
.PHONY: bench-route
bench-route: $(BENCH_ROUTE)
	$(BENCH_ROUTE)

# QEMU guests on TAP devices (tests/e2e, docs/e2e.md).
e2e: deps
	$(MAKE) all
	./scripts/e2e.sh

e2e-cloudinit: deps
	$(MAKE) all
	./scripts/e2e-cloudinit.sh

# The same guest started by a real libvirtd through the hook (docs/e2e.md).
e2e-cloudinit-libvirt: deps
	$(MAKE) all
	./scripts/e2e-cloudinit.sh libvirt

# The dual-stack guest whose cloud-init asks only [fd00:ec2::254] (docs/ipv6.md).
e2e-cloudinit-ipv6: deps
	$(MAKE) all
	./scripts/e2e-cloudinit.sh ipv6

# ---- man pages, install, the Debian package (docs/operations.md) ----
# The man pages are help2man's reading of each program's --help and
# --version: the option tables themselves, so they cannot drift.
MAN_PROGS := imdsd imds-loadmap imds-storm
MAN_PAGES := $(patsubst %,$(BUILD)/man/%.8,$(MAN_PROGS))
HELP2MAN  ?= help2man
all: $(MAN_PAGES)
$(BUILD)/man/%.8: $(BUILD)/% dist/man/%.h2m
	@mkdir -p $(@D)
	$(HELP2MAN) --no-info --section 8 --include dist/man/$*.h2m --output $@.tmp $< && mv $@.tmp $@

# PREFIX moves everything but what must be where others look: libvirt runs
# hooks from /etc/libvirt/hooks only, and the configuration is /etc/default/imds.
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
LIBEXECDIR ?= $(PREFIX)/libexec
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/imds
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
HOOKDIR    ?= $(SYSCONFDIR)/libvirt/hooks/qemu.d
INSTALL_DOCS := README.md $(wildcard docs/*.md)
INSTALL_SUBST = sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' \
	-e 's|@DOCDIR@|$(DOCDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

.PHONY: install uninstall deb
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR)/imds $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(UNITDIR) $(DESTDIR)$(HOOKDIR) $(DESTDIR)$(SYSCONFDIR)/default
	install -m 755 $(BUILD)/imdsd $(BUILD)/imds-loadmap $(BUILD)/imds-storm $(DESTDIR)$(SBINDIR)/
	install -m 755 $(BUILD)/imds-libvirt-hook $(DESTDIR)$(LIBEXECDIR)/imds/
	ln -sf $(LIBEXECDIR)/imds/imds-libvirt-hook $(DESTDIR)$(HOOKDIR)/imds
	install -m 644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(INSTALL_DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 644 examples/vms.json examples/vms-flavors.json $(DESTDIR)$(DOCDIR)/examples/
	$(INSTALL_SUBST) dist/imdsd.service.in > $(DESTDIR)$(UNITDIR)/imdsd.service
	$(INSTALL_SUBST) dist/imds-sync.service.in > $(DESTDIR)$(UNITDIR)/imds-sync.service
	$(INSTALL_SUBST) dist/default-imds.in > $(DESTDIR)$(DOCDIR)/examples/default-imds
	@# an operator's settings are never overwritten
	test -e $(DESTDIR)$(SYSCONFDIR)/default/imds || \
		install -m 644 $(DESTDIR)$(DOCDIR)/examples/default-imds $(DESTDIR)$(SYSCONFDIR)/default/imds

# Removes what install put there; /etc/default/imds only if unchanged.
uninstall:
	if cmp -s $(DESTDIR)$(SYSCONFDIR)/default/imds $(DESTDIR)$(DOCDIR)/examples/default-imds; then \
		rm -f $(DESTDIR)$(SYSCONFDIR)/default/imds; fi
	rm -f $(addprefix $(DESTDIR)$(SBINDIR)/,imdsd imds-loadmap imds-storm) \
		$(DESTDIR)$(LIBEXECDIR)/imds/imds-libvirt-hook \
		$(DESTDIR)$(HOOKDIR)/imds $(DESTDIR)$(UNITDIR)/imdsd.service $(DESTDIR)$(UNITDIR)/imds-sync.service \
		$(addprefix $(DESTDIR)$(MANDIR)/man8/,$(addsuffix .8,$(MAN_PROGS)))
	rm -rf $(DESTDIR)$(DOCDIR)
	rmdir $(DESTDIR)$(LIBEXECDIR)/imds 2>/dev/null || true

# imds_$(VERSION)_amd64.deb in $(BUILD)/deb, built by dpkg-buildpackage in a
# copy of the tree (scripts/make-deb.sh), so the tree stays clean.
deb: deps
	./scripts/make-deb.sh $(BUILD)/deb

clean:
	rm -rf $(BUILD)

-include $(wildcard $(BUILD)/*.d $(BUILD)/obj/*/*.d $(BUILD)/san/*/*.d $(BUILD)/tests/*.d \
	$(BUILD)/fuzz/obj/*/*.d $(BUILD)/fuzz/*.d $(BUILD)/san-bin/*.d)
