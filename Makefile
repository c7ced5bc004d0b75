# SPDX-License-Identifier: LGPL-2.1-or-later
#
# eventbuf - a Kbuild-style, non-recursive build.
#
# Each directory lists its goals in a Kbuild file (obj-y, tests-y, bench-y,
# examples-y, ccflags-y); this Makefile includes them and owns every rule.
# Run "make help" for the targets and switches.

MAKEFLAGS += -rR --no-print-directory
.SUFFIXES:
.DELETE_ON_ERROR:

srctree := $(CURDIR)

version_field = $(shell sed -n 's/^\#define EVENTBUF_VERSION_$(1) \([0-9]*\)$$/\1/p' \
	$(srctree)/include/eventbuf/version.h)
VERSION_MAJOR := $(call version_field,MAJOR)
VERSION := $(VERSION_MAJOR).$(call version_field,MINOR).$(call version_field,PATCH)

# ---------------------------------------------------------------------------
# Beautify output, as the kernel does: V=1 prints whole commands, make -s
# prints nothing.
ifeq ("$(origin V)", "command line")
  KBUILD_VERBOSE := $(V)
endif
ifeq ($(KBUILD_VERBOSE),1)
  quiet :=
  Q :=
else
  quiet := quiet_
  Q := @
endif
ifneq ($(findstring s,$(firstword -$(MAKEFLAGS))),)
  quiet := silent_
endif

# ---------------------------------------------------------------------------
# Configuration switches (y to enable).
CONFIG_ASAN ?= n
CONFIG_TSAN ?= n
CONFIG_VALGRIND ?= n
CONFIG_EVENTBUF_DEBUG ?= n
CONFIG_EVENTBUF_PUBSUB ?= y
CONFIG_EVENTBUF_HUGEPAGES ?= n
CONFIG_FUZZ ?= n
QUICK ?= 0
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 60

ifeq ($(CONFIG_ASAN)$(CONFIG_TSAN),yy)
  $(error CONFIG_ASAN and CONFIG_TSAN cannot be combined)
endif

# The output directory: O=dir, else one per sanitizer so builds never mix.
ifneq ($(O),)
  objtree := $(abspath $(O))
else ifeq ($(CONFIG_FUZZ),y)
  objtree := $(srctree)/build-fuzz
else ifeq ($(CONFIG_ASAN),y)
  objtree := $(srctree)/build-asan
else ifeq ($(CONFIG_TSAN),y)
  objtree := $(srctree)/build-tsan
else
  objtree := $(srctree)/build
endif

# clean deletes the output directory, so the build writes only into one it
# may delete: a default one above, a new or empty O=, or an O= it marked
# with its stamp. It refuses the source tree and any directory holding it.
stamp := .eventbuf-objtree
objtree-real := $(or $(realpath $(objtree)),$(objtree))
ifneq ($(filter $(objtree-real) $(patsubst %/,%,$(objtree-real))/%,$(realpath $(srctree))),)
  $(error O=$(O) is the source tree or a directory above it; choose an empty directory, e.g. O=$(srctree)/build-out)
endif
ifneq ($(O),)
  ifeq ($(wildcard $(objtree)/$(stamp)),)
    ifneq ($(wildcard $(objtree)/* $(objtree)/.[!.]* $(objtree)/..?*),)
      $(error O=$(O) holds files this build did not write (no $(stamp) there); choose a new or empty directory)
    endif
  endif
endif
ifneq ($(filter-out clean help,$(or $(MAKECMDGOALS),all)),)
  ifeq ($(wildcard $(objtree)/$(stamp)),)
    $(shell mkdir -p '$(objtree)' && echo 'eventbuf build output of $(srctree); make clean deletes this directory' > '$(objtree)/$(stamp)')
  endif
endif

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

ifeq ($(origin CC),default)
  CC := gcc
endif
ifeq ($(CONFIG_FUZZ),y)
  CC := clang
endif
CC ?= gcc
AR := ar
PKG_CONFIG ?= pkg-config

include $(srctree)/scripts/Kbuild.include

# ---------------------------------------------------------------------------
# Flags. Recursive (=) on purpose: pkg-config runs in the recipes, after
# the deps target has checked (or, for make check, installed) the packages.
URCU_CFLAGS = $(shell $(PKG_CONFIG) --cflags liburcu-bp)
URCU_LIBS = $(shell $(PKG_CONFIG) --libs liburcu-bp)
CMOCKA_CFLAGS = $(shell $(PKG_CONFIG) --cflags cmocka)
CMOCKA_LIBS = $(shell $(PKG_CONFIG) --libs cmocka)

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wundef
OPTFLAGS := -O2 -g
SANFLAGS :=
ifeq ($(CONFIG_ASAN),y)
  OPTFLAGS := -O1 -g
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -DEVENTBUF_SANITIZE
endif
ifeq ($(CONFIG_FUZZ),y)
  # libFuzzer's coverage everywhere, its main() only in the fuzzers.
  OPTFLAGS := -O1 -g
  SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer -DEVENTBUF_SANITIZE
endif
ifeq ($(CONFIG_TSAN),y)
  # TSan does not model atomic_thread_fence() (gcc warns, -Wtsan): the
  # wake-up fences (src/wait.c) still execute, and every access they order
  # is itself atomic, so TSan has no data race to misjudge there.
  OPTFLAGS := -O1 -g
  SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer -DEVENTBUF_TSAN \
	-Wno-tsan
endif

base_flags = -std=c11 $(WARNINGS) $(OPTFLAGS) $(SANFLAGS) -fPIC \
	-fvisibility=hidden -I$(srctree)/include $(URCU_CFLAGS) $(CFLAGS)
c_flags = $(base_flags) $(ccflags) $(extra_cflags) -MMD -MP
ld_flags = $(SANFLAGS) $(LDFLAGS)

so_flags := -Wl,-soname,libeventbuf.so.$(VERSION_MAJOR) \
	-Wl,--version-script=$(srctree)/src/eventbuf.map
ifeq ($(SANFLAGS),)
  so_flags += -Wl,-z,defs
endif
so_libs = $(URCU_LIBS) -lpthread

# ---------------------------------------------------------------------------
# Goals from the Kbuild files. $(call descend,DIR,LISTS) includes DIR/Kbuild,
# which fills obj-y, ccflags-y and the program LISTS (tests-y, ...), each
# program P naming its objects in P-objs. It defines kbuild-DIR-objs (every
# object), kbuild-DIR-subdirs (the obj-y entries ending in /, as in Kbuild:
# directories with a Kbuild file of their own, descended by the caller),
# kbuild-DIR-LIST (the programs' paths), kbuild-DIR-LIST-objs and
# kbuild-DIR-ccflags, and their rules:
# objects are compiled with that Kbuild file's ccflags-y and rebuilt when it
# changes; programs link the objects and link-libs-LIST.
.DEFAULT_GOAL := all
PHONY :=
targets :=
dep-files :=

# Programs link the static library, or the build of it that <prog>-lib or
# lib-<list> names (tests: the testing library, with the hooks they reach);
# tests reach hidden internals and may wrap malloc (<prog>-ldflags); the
# installed shared library is checked on its own by check-install.
define program-rule
$(objtree)/$(1)/$(2): $(addprefix $(objtree)/$(1)/,$($(2)-objs)) \
		$(if $(or $($(2)-lib),$(lib-$(3))),$(objtree)/$(or $($(2)-lib),$(lib-$(3))),$(static-lib)) FORCE
	$$(call if_changed,link)
$(objtree)/$(1)/$(2): link_libs = $($(2)-ldflags) $$(link-libs-$(3))
endef

define descend
obj-y :=
ccflags-y :=
$$(foreach l,$(2),$$(eval $$(l) :=))
include $(srctree)/$(1)/Kbuild
kbuild-$(1)-ccflags := $$(ccflags-y)
$$(foreach l,$(2),$$(eval kbuild-$(1)-$$(l) := $$(addprefix $(objtree)/$(1)/,$$($$(l)))))
$$(foreach l,$(2),$$(eval kbuild-$(1)-$$(l)-objs := $$(sort $$(addprefix $(objtree)/$(1)/,\
	$$(foreach p,$$($$(l)),$$($$(p)-objs))))))
kbuild-$(1)-subdirs := $$(patsubst %/,%,$$(filter %/,$$(obj-y)))
kbuild-$(1)-objs := $$(sort $$(addprefix $(objtree)/$(1)/,$$(filter-out %/,$$(obj-y))) \
	$$(foreach l,$(2),$$(kbuild-$(1)-$$(l)-objs)))
$$(kbuild-$(1)-objs): ccflags := $$(ccflags-y)
$$(kbuild-$(1)-objs): $(srctree)/$(1)/Kbuild | deps
$(objtree)/$(1)/%.o: $(srctree)/$(1)/%.c FORCE
	$$(call if_changed,cc_o_c)
$$(foreach l,$(2),$$(foreach p,$$($$(l)),$$(eval $$(call program-rule,$(1),$$(p),$$(l)))))
targets += $$(kbuild-$(1)-objs) $$(foreach l,$(2),$$(kbuild-$(1)-$$(l)))
dep-files += $$(kbuild-$(1)-objs:.o=.d)
endef

link-libs-tests-y = $(URCU_LIBS) $(CMOCKA_LIBS) -lpthread
link-libs-fuzz-y = -fsanitize=fuzzer $(URCU_LIBS) -lpthread
link-libs-soak-y = $(URCU_LIBS) $(CMOCKA_LIBS) -lpthread
link-libs-bench-y = $(URCU_LIBS) -lpthread -lm
link-libs-examples-y = $(URCU_LIBS) -lpthread

static-lib := $(objtree)/libeventbuf.a

$(eval $(call descend,src,))
$(foreach d,$(kbuild-src-subdirs),$(eval $(call descend,src/$(d),)))
lib-objs := $(kbuild-src-objs) $(foreach d,$(kbuild-src-subdirs),$(kbuild-src/$(d)-objs))

# Other builds of the same library, for the tests: $(call lib-variant,NAME,
# FLAGS,EXTRA) builds $(objtree)/NAME/src/ with FLAGS added and EXTRA objects.
# testing: CONFIG_EVENTBUF_TESTING, the hooks the tests reach (the slab
# warm-up they set, a publisher's expire-all, an out-of-line item reference
# they wrap), which the installed library leaves out. debug: that and
# CONFIG_EVENTBUF_DEBUG, for the tests that check it. Every src/
# directory's Kbuild sets the same ccflags-y, src/Kbuild's.
define lib-variant
$(1)-objs := $$(sort $$(patsubst $(objtree)/src/%,$(objtree)/$(1)/src/%,$$(lib-objs)) \
	$$(addprefix $(objtree)/$(1)/src/,$(3)))
$$($(1)-objs): ccflags := $$(kbuild-src-ccflags) $(2)
$$($(1)-objs): $(srctree)/src/Kbuild $$(foreach d,$$(kbuild-src-subdirs),$(srctree)/src/$$(d)/Kbuild) | deps
$(objtree)/$(1)/src/%.o: $(srctree)/src/%.c FORCE
	$$(call if_changed,cc_o_c)
targets += $$($(1)-objs)
dep-files += $$($(1)-objs:.o=.d)
endef
testing-lib := $(objtree)/libeventbuf-testing.a
debug-lib := $(objtree)/libeventbuf-debug.a
$(eval $(call lib-variant,testing,-DCONFIG_EVENTBUF_TESTING,))
$(eval $(call lib-variant,debug,-DCONFIG_EVENTBUF_TESTING -DCONFIG_EVENTBUF_DEBUG,debug.o))
lib-tests-y := libeventbuf-testing.a
lib-fuzz-y := libeventbuf-testing.a

$(eval $(call descend,tests,tests-y fuzz-y soak-y))
test-bins := $(kbuild-tests-tests-y)
fuzz-bins := $(kbuild-tests-fuzz-y)
soak-bins := $(kbuild-tests-soak-y)
$(kbuild-tests-tests-y-objs) $(kbuild-tests-soak-y-objs): extra_cflags = $(CMOCKA_CFLAGS)
$(kbuild-tests-tests-y-objs) $(kbuild-tests-soak-y-objs): | deps-test
# test_resp links the examples' RESP parser, compiled here with the tests.
$(objtree)/tests/resp.o: $(srctree)/examples/resp.c FORCE
	$(call if_changed,cc_o_c)

$(eval $(call descend,bench,bench-y))
bench-bins := $(kbuild-bench-bench-y)
$(kbuild-bench-objs): extra_cflags = -DURCU_VERSION='"$(shell $(PKG_CONFIG) --modversion liburcu-bp)"'

$(eval $(call descend,examples,examples-y))
example-bins := $(kbuild-examples-examples-y)

shared-lib := $(objtree)/libeventbuf.so.$(VERSION)
shared-links := $(objtree)/libeventbuf.so.$(VERSION_MAJOR) $(objtree)/libeventbuf.so
pc-file := $(objtree)/eventbuf.pc

# ---------------------------------------------------------------------------
PHONY += all
all: $(static-lib) $(shared-lib) $(shared-links) $(pc-file) $(example-bins)

# Build dependencies. make check, make bench and the tools (verify, fuzz,
# soak) install what is missing (scripts/deps.sh); every other goal only
# checks, and stops naming the package and the command that installs it.
deps-install-goals := check bench verify fuzz fuzz-run soak
PHONY += deps deps-test
ifneq ($(filter $(deps-install-goals),$(MAKECMDGOALS)),)
deps:
	$(Q)$(PKG_CONFIG) --exists liburcu-bp cmocka 2>/dev/null || \
		$(srctree)/scripts/deps.sh
deps-test: deps
else
deps:
	$(Q)PKG_CONFIG='$(PKG_CONFIG)' $(srctree)/scripts/deps.sh --check pkg-config liburcu-dev
deps-test: deps
	$(Q)PKG_CONFIG='$(PKG_CONFIG)' $(srctree)/scripts/deps.sh --check libcmocka-dev
endif

$(static-lib): $(lib-objs) FORCE
	$(call if_changed,ar)

$(debug-lib): $(debug-objs) FORCE
	$(call if_changed,ar)

$(testing-lib): $(testing-objs) FORCE
	$(call if_changed,ar)

$(shared-lib): $(lib-objs) $(srctree)/src/eventbuf.map FORCE
	$(call if_changed,link_so)

$(objtree)/libeventbuf.so.$(VERSION_MAJOR): $(shared-lib) FORCE
	$(call if_changed,ln)
$(objtree)/libeventbuf.so: $(objtree)/libeventbuf.so.$(VERSION_MAJOR) FORCE
	$(call if_changed,ln)

# The installation directories are part of its command: a make install
# with another PREFIX regenerates it.
$(pc-file): $(srctree)/src/eventbuf.pc.in FORCE
	$(call if_changed,gen_pc)

targets += $(static-lib) $(debug-lib) $(testing-lib) $(shared-lib) $(shared-links) $(pc-file)

# ---------------------------------------------------------------------------
PHONY += tests check check-abi check-install check-build check-readme
tests: $(test-bins)

check: all tests
	$(Q)$(srctree)/scripts/run-tests.sh \
		"$(if $(filter y,$(CONFIG_VALGRIND)),valgrind)" \
		"$(if $(filter y,$(CONFIG_TSAN)),$(srctree)/tests/tsan.supp)" \
		$(test-bins)
ifeq ($(SANFLAGS),)
	$(Q)$(MAKE) check-abi check-install check-build check-readme
endif

# Every public header, so that a new one is checked without an edit here.
check-abi: $(shared-lib)
	$(Q)$(srctree)/scripts/check-abi.sh $(shared-lib) $(srctree)/src/eventbuf.map \
		$(wildcard $(srctree)/include/eventbuf/*.h)

check-install: all
	$(Q)$(srctree)/scripts/check-install.sh "$(MAKE)" $(objtree)

# clean, O=, installs, rebuilds and check-abi, on a copy of the tree.
check-build:
	$(Q)$(srctree)/scripts/check-build.sh

# Every ```c block of the README compiles with -Wall -Wextra -Werror.
check-readme: $(static-lib)
	$(Q)$(srctree)/scripts/check-readme.sh $(srctree)/README.md $(objtree)/readme \
		$(static-lib) $(URCU_LIBS) -lpthread

# The API fuzzer (libFuzzer, clang): its own build in build-fuzz/. New
# crashes are kept in build-fuzz/crashes/; copy them to tests/fuzz-corpus/
# to make them regression inputs that make check replays.
PHONY += fuzz fuzz-run
ifneq ($(CONFIG_FUZZ),y)
fuzz:
	$(Q)$(srctree)/scripts/deps.sh clang
	$(Q)echo 'int LLVMFuzzerTestOneInput(void) { return 0; }' | \
		clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null || \
		$(srctree)/scripts/deps.sh libclang-rt-dev
	$(Q)$(MAKE) CONFIG_FUZZ=y fuzz-run
else
fuzz: fuzz-run
endif
fuzz-run: $(fuzz-bins)
	$(Q)$(srctree)/scripts/run-fuzz.sh $(FUZZ_SECONDS) $(objtree) \
		$(srctree)/tests/fuzz-corpus $(fuzz-bins)

# A bounded soak: RSS and descriptors must stay flat (tests/soak.c).
PHONY += soak
soak: $(soak-bins)
	$(Q)$(soak-bins) $(SOAK_SECONDS)

# Exhaustive model checking of the wake-up and reclamation protocols.
PHONY += verify
verify:
	$(Q)$(srctree)/scripts/verify.sh $(srctree)/tests/model $(objtree)/model

PHONY += bench bench-build
BENCH_ARGS ?=
bench-build: $(bench-bins)
bench: $(bench-bins)
	$(Q)$(srctree)/scripts/deps.sh gnuplot-nox
	$(Q)$(objtree)/bench/bench $(if $(filter 1,$(QUICK)),--quick) \
		--out $(objtree)/bench $(BENCH_ARGS)

# fanout and fanout-epoll at 1 to 16 readers, one bench process each
# (scripts/fanout-scaling.sh): for machines with many cores.
PHONY += bench-scaling
SCALING_READERS ?= 1 2 4 8 12 16
SCALING_OUT ?= $(objtree)/bench-scaling
bench-scaling: $(bench-bins)
	$(Q)$(srctree)/scripts/deps.sh gnuplot-nox
	$(Q)$(srctree)/scripts/fanout-scaling.sh $(objtree)/bench/bench \
		$(SCALING_OUT) $(SCALING_READERS)

PHONY += example-run
EXAMPLE_ARGS ?= 2000 3
example-run: $(example-bins)
	$(Q)$(if $(filter y,$(CONFIG_TSAN)),TSAN_OPTIONS="suppressions=$(srctree)/tests/tsan.supp halt_on_error=1 $${TSAN_OPTIONS:-}") \
		$(objtree)/examples/service $(EXAMPLE_ARGS)

# examples/resp_server beside a throwaway redis-server, the same load
# (examples/resp_load) against each; QUICK=1: a few seconds.
PHONY += example-bench
example-bench: $(example-bins)
	$(Q)$(srctree)/scripts/deps.sh redis-server gnuplot-nox
	$(Q)QUICK=$(QUICK) $(srctree)/scripts/example-bench.sh $(objtree)

PHONY += install uninstall
install: all
	$(Q)install -d $(DESTDIR)$(INCLUDEDIR)/eventbuf $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(PKGCONFIGDIR)
	$(Q)install -m 644 $(srctree)/include/eventbuf/*.h $(DESTDIR)$(INCLUDEDIR)/eventbuf/
	$(Q)install -m 644 $(static-lib) $(DESTDIR)$(LIBDIR)/
	$(Q)install -m 755 $(shared-lib) $(DESTDIR)$(LIBDIR)/
	$(Q)ln -sf libeventbuf.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libeventbuf.so.$(VERSION_MAJOR)
	$(Q)ln -sf libeventbuf.so.$(VERSION_MAJOR) $(DESTDIR)$(LIBDIR)/libeventbuf.so
	$(Q)install -m 644 $(pc-file) $(DESTDIR)$(PKGCONFIGDIR)/
	$(Q)install -d $(DESTDIR)$(DATADIR)/eventbuf
	$(Q)install -m 644 $(srctree)/tests/valgrind.supp $(DESTDIR)$(DATADIR)/eventbuf/
	@echo '  INSTALL $(DESTDIR)$(PREFIX)'

uninstall:
	$(Q)rm -rf $(DESTDIR)$(INCLUDEDIR)/eventbuf
	$(Q)rm -f $(DESTDIR)$(LIBDIR)/libeventbuf.a \
		$(DESTDIR)$(LIBDIR)/libeventbuf.so* \
		$(DESTDIR)$(PKGCONFIGDIR)/eventbuf.pc
	$(Q)rm -rf $(DESTDIR)$(DATADIR)/eventbuf
	@echo '  UNINST  $(DESTDIR)$(PREFIX)'

# O= is deleted only when the build's stamp says it made it (see stamp).
PHONY += clean
clean:
	$(Q)rm -rf $(srctree)/build $(srctree)/build-asan $(srctree)/build-tsan \
		$(srctree)/build-fuzz
ifneq ($(O),)
	$(Q)if [ -e '$(objtree)/$(stamp)' ]; then rm -rf '$(objtree)'; \
	elif [ -e '$(objtree)' ]; then \
		echo 'clean: O=$(O) has no $(stamp): not a directory this build made, left alone' >&2; \
		exit 1; \
	fi
endif
	@echo '  CLEAN'

PHONY += help
help:
	@echo 'Targets:'
	@echo '  all           - libeventbuf.a, libeventbuf.so.$(VERSION), eventbuf.pc, examples'
	@echo '  check         - build and run the cmocka suite (installs deps if missing),'
	@echo '                  then the ABI, install, build and README checks'
	@echo '  bench         - run the benchmark against the mutex variants (QUICK=1: smoke run)'
	@echo '  bench-scaling - fanout and fanout-epoll at 1-16 readers (SCALING_READERS="1 2 4 ...",'
	@echo '                  SCALING_OUT=dir, SPIN_NS=ns: see scripts/fanout-scaling.sh)'
	@echo '  example-run   - run examples/service: 2,000 clients over loopback TCP for 3 s'
	@echo '                  (EXAMPLE_ARGS="clients seconds workers changes-per-second")'
	@echo '  example-bench - examples/resp_server against redis-server, same RESP load (QUICK=1: smoke run)'
	@echo '  verify        - model-check tests/model/*.pml with spin (installs it)'
	@echo '  fuzz          - run the API fuzzer for FUZZ_SECONDS (libFuzzer, clang)'
	@echo '  soak          - run writer, readers and subscribers for SOAK_SECONDS;'
	@echo '                  fails if RSS or descriptors grow'
	@echo '  install       - install to $$(DESTDIR)$$(PREFIX) (PREFIX=$(PREFIX))'
	@echo '  uninstall     - remove what install put there'
	@echo '  clean         - remove build, build-asan, build-tsan, build-fuzz (and an O= it made)'
	@echo ''
	@echo 'Switches:'
	@echo '  V=1                    - print whole commands; make -s prints nothing'
	@echo '  O=dir                  - build in dir (new, empty, or made by an earlier build)'
	@echo '  CONFIG_ASAN=y          - AddressSanitizer + UBSan build in build-asan/'
	@echo '  CONFIG_TSAN=y          - ThreadSanitizer build in build-tsan/'
	@echo '  CONFIG_VALGRIND=y      - run the tests under valgrind memcheck'
	@echo '  CONFIG_EVENTBUF_DEBUG=y - abort when two threads append to one buffer,'
	@echo '                           a reference is put twice or a handle freed twice'
	@echo '  CONFIG_EVENTBUF_PUBSUB=n - leave the pub/sub layer (src/pubsub/) out'
	@echo '  CONFIG_EVENTBUF_HUGEPAGES=y - advise slab arenas as transparent huge pages'
	@echo '  QUICK=1                - short benchmark run'
	@echo "  BENCH_ARGS='--only W'  - run some workloads, W comma-separated (append, fanout,"
	@echo '                           fanout-epoll, wake, retained, fds, subscribers);'
	@echo "                           '--readers 1,2,4,8,16': fanout's reader counts"

PHONY += FORCE
FORCE:

# The compiler's header dependencies and the saved commands, named from the
# object and target lists (no search of the build tree).
-include $(wildcard $(dep-files))
-include $(call cmd-files,$(targets))

.PHONY: $(PHONY)
