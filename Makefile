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

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
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
# Flags. Recursive (=) on purpose: pkg-config runs after scripts/deps.sh.
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
# Goals from the Kbuild files.
obj-y :=
ccflags-y :=
include $(srctree)/src/Kbuild
lib-objs := $(addprefix $(objtree)/src/,$(obj-y))
$(lib-objs): ccflags := $(ccflags-y)

# The same library with CONFIG_EVENTBUF_DEBUG, for the tests that check it.
debug-lib := $(objtree)/libeventbuf-debug.a
debug-objs := $(addprefix $(objtree)/debug/src/,$(sort $(obj-y) debug.o))
$(debug-objs): ccflags := $(ccflags-y) -DCONFIG_EVENTBUF_DEBUG

tests-y :=
fuzz-y :=
soak-y :=
ccflags-y :=
include $(srctree)/tests/Kbuild
test-bins := $(addprefix $(objtree)/tests/,$(tests-y))
test-obj-files := $(sort $(addprefix $(objtree)/tests/,\
	$(foreach t,$(tests-y),$($(t)-objs))))
$(test-obj-files): ccflags := $(ccflags-y)
$(test-obj-files): extra_cflags = $(CMOCKA_CFLAGS)
fuzz-bins := $(addprefix $(objtree)/tests/,$(fuzz-y))
fuzz-obj-files := $(sort $(addprefix $(objtree)/tests/,\
	$(foreach f,$(fuzz-y),$($(f)-objs))))
$(fuzz-obj-files): ccflags := $(ccflags-y)
soak-bins := $(addprefix $(objtree)/tests/,$(soak-y))
soak-obj-files := $(sort $(addprefix $(objtree)/tests/,\
	$(foreach f,$(soak-y),$($(f)-objs))))
$(soak-obj-files): ccflags := $(ccflags-y)
$(soak-obj-files): extra_cflags = $(CMOCKA_CFLAGS)

bench-y :=
ccflags-y :=
include $(srctree)/bench/Kbuild
bench-bins := $(addprefix $(objtree)/bench/,$(bench-y))
bench-obj-files := $(sort $(addprefix $(objtree)/bench/,\
	$(foreach b,$(bench-y),$($(b)-objs))))
$(bench-obj-files): ccflags := $(ccflags-y)
$(bench-obj-files): extra_cflags = -DURCU_VERSION='"$(shell $(PKG_CONFIG) --modversion liburcu-bp)"'

examples-y :=
ccflags-y :=
include $(srctree)/examples/Kbuild
example-bins := $(addprefix $(objtree)/examples/,$(examples-y))
example-obj-files := $(sort $(addprefix $(objtree)/examples/,\
	$(foreach e,$(examples-y),$($(e)-objs))))
$(example-obj-files): ccflags := $(ccflags-y)

static-lib := $(objtree)/libeventbuf.a
shared-lib := $(objtree)/libeventbuf.so.$(VERSION)
shared-links := $(objtree)/libeventbuf.so.$(VERSION_MAJOR) $(objtree)/libeventbuf.so
pc-file := $(objtree)/eventbuf.pc

# ---------------------------------------------------------------------------
PHONY := all
all: $(static-lib) $(shared-lib) $(shared-links) $(pc-file) $(example-bins)

# Install missing build dependencies (liburcu, cmocka, pkg-config) once.
PHONY += deps
deps:
	$(Q)$(PKG_CONFIG) --exists liburcu-bp cmocka 2>/dev/null || \
		$(srctree)/scripts/deps.sh

# Everything the compiler sees; objects rebuild when it changes.
track-flags = $(CC) $(base_flags) $(ld_flags) CONFIG_EVENTBUF_DEBUG=$(CONFIG_EVENTBUF_DEBUG)
$(objtree)/.cflags: deps FORCE
	$(call filechk,$(track-flags))

$(objtree)/%.o: $(srctree)/%.c $(objtree)/.cflags
	$(call cmd,cc_o_c)

$(objtree)/debug/%.o: $(srctree)/%.c $(objtree)/.cflags
	$(call cmd,cc_o_c)

$(static-lib): $(lib-objs)
	$(call cmd,ar)

$(debug-lib): $(debug-objs)
	$(call cmd,ar)

$(shared-lib): $(lib-objs) $(srctree)/src/eventbuf.map
	$(call cmd,link_so)

$(objtree)/libeventbuf.so.$(VERSION_MAJOR): $(shared-lib)
	$(call cmd,ln)
$(objtree)/libeventbuf.so: $(objtree)/libeventbuf.so.$(VERSION_MAJOR)
	$(call cmd,ln)

$(pc-file): $(srctree)/src/eventbuf.pc.in $(objtree)/.cflags
	$(call cmd,gen_pc)

# Programs link the static library (<prog>-lib names another build of it):
# tests reach hidden internals and may wrap malloc (<prog>-ldflags); the
# installed shared library is checked on its own by check-install.
define program-rule
$(objtree)/$(1)/$(2): $(addprefix $(objtree)/$(1)/,$($(2)-objs)) \
		$(if $($(2)-lib),$(objtree)/$($(2)-lib),$(static-lib))
	$$(call cmd,link)
$(objtree)/$(1)/$(2): link_libs = $($(2)-ldflags) $(3)
endef
$(foreach t,$(tests-y),$(eval $(call program-rule,tests,$(t),$$(URCU_LIBS) $$(CMOCKA_LIBS) -lpthread)))
$(foreach f,$(fuzz-y),$(eval $(call program-rule,tests,$(f),-fsanitize=fuzzer $$(URCU_LIBS) -lpthread)))
$(foreach s,$(soak-y),$(eval $(call program-rule,tests,$(s),$$(URCU_LIBS) -lpthread)))
$(foreach b,$(bench-y),$(eval $(call program-rule,bench,$(b),$$(URCU_LIBS) -lpthread -lm)))
$(foreach e,$(examples-y),$(eval $(call program-rule,examples,$(e),$$(URCU_LIBS) -lpthread)))

# ---------------------------------------------------------------------------
PHONY += tests check check-abi check-install
tests: $(test-bins)

check: all tests
	$(Q)$(srctree)/scripts/run-tests.sh \
		"$(if $(filter y,$(CONFIG_VALGRIND)),valgrind)" \
		"$(if $(filter y,$(CONFIG_TSAN)),$(srctree)/tests/tsan.supp)" \
		$(test-bins)
ifeq ($(SANFLAGS),)
	$(Q)$(MAKE) check-abi check-install
endif

check-abi: $(shared-lib)
	$(Q)$(srctree)/scripts/check-abi.sh $(shared-lib) \
		$(srctree)/include/eventbuf/eventbuf.h \
		$(srctree)/include/eventbuf/publisher.h \
		$(srctree)/include/eventbuf/poller.h

check-install: all
	$(Q)$(srctree)/scripts/check-install.sh "$(MAKE)" $(objtree)

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

PHONY += example-run
EXAMPLE_ARGS ?= 2000 3
example-run: $(example-bins)
	$(Q)$(if $(filter y,$(CONFIG_TSAN)),TSAN_OPTIONS="suppressions=$(srctree)/tests/tsan.supp halt_on_error=1 $${TSAN_OPTIONS:-}") \
		$(objtree)/examples/service $(EXAMPLE_ARGS)

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
	@echo '  INSTALL $(DESTDIR)$(PREFIX)'

uninstall:
	$(Q)rm -rf $(DESTDIR)$(INCLUDEDIR)/eventbuf
	$(Q)rm -f $(DESTDIR)$(LIBDIR)/libeventbuf.a \
		$(DESTDIR)$(LIBDIR)/libeventbuf.so* \
		$(DESTDIR)$(PKGCONFIGDIR)/eventbuf.pc
	@echo '  UNINST  $(DESTDIR)$(PREFIX)'

PHONY += clean
clean:
	$(Q)rm -rf $(srctree)/build $(srctree)/build-asan $(srctree)/build-tsan \
		$(srctree)/build-fuzz \
		$(if $(O),$(objtree))
	@echo '  CLEAN'

PHONY += help
help:
	@echo 'Targets:'
	@echo '  all           - libeventbuf.a, libeventbuf.so.$(VERSION), eventbuf.pc, examples'
	@echo '  check         - build and run the cmocka suite (installs deps if missing),'
	@echo '                  then the ABI and install checks'
	@echo '  bench         - run the benchmark against the mutex variants (QUICK=1: smoke run)'
	@echo '  example-run   - run examples/service: 2,000 clients over loopback TCP for 3 s'
	@echo '                  (EXAMPLE_ARGS="clients seconds workers changes-per-second")'
	@echo '  verify        - model-check tests/model/*.pml with spin (installs it)'
	@echo '  fuzz          - run the API fuzzer for FUZZ_SECONDS (libFuzzer, clang)'
	@echo '  soak          - run writer, readers and subscribers for SOAK_SECONDS;'
	@echo '                  fails if RSS or descriptors grow'
	@echo '  install       - install to $$(DESTDIR)$$(PREFIX) (PREFIX=$(PREFIX))'
	@echo '  uninstall     - remove what install put there'
	@echo '  clean         - remove build, build-asan, build-tsan, build-fuzz (and O=)'
	@echo ''
	@echo 'Switches:'
	@echo '  V=1                    - print whole commands; make -s prints nothing'
	@echo '  O=dir                  - build in dir'
	@echo '  CONFIG_ASAN=y          - AddressSanitizer + UBSan build in build-asan/'
	@echo '  CONFIG_TSAN=y          - ThreadSanitizer build in build-tsan/'
	@echo '  CONFIG_VALGRIND=y      - run the tests under valgrind memcheck'
	@echo '  CONFIG_EVENTBUF_DEBUG=y - abort when two threads append to one buffer'
	@echo '  QUICK=1                - short benchmark run'

PHONY += FORCE
FORCE:

-include $(shell find $(objtree) -name '*.d' 2>/dev/null)

.PHONY: $(PHONY)
