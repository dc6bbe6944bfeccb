# greta: build the library, the CLI and the tests.
#   make            build/greta, build/libgreta.a and build/libgreta.so (CPU backends;
#                   CUDA is a separate target)
#   make install PREFIX=/usr/local   the CLI, both libraries, greta.h and greta.pc
#                   (DESTDIR=... stages the install elsewhere)
#   make test       build and run the whole suite (unit tests + CLI tests)
#   make test-san   the suite again under AddressSanitizer + UndefinedBehaviorSanitizer
#   make setup      install the Debian packages the build needs (scripts/setup/install-deps)
#   make fetch-model  download the default model into models/
#   make SAN=1      sanitizer build into build-san/
#   make CUDA=1     adds the cuda backend (nvcc, sm_90 + PTX) into build-cuda/
#                   (docs/cuda.md); EXTRA_CFLAGS / EXTRA_LDFLAGS add paths

.DEFAULT_GOAL := all
CC      ?= gcc
SAN     ?= 0
CUDA    ?= 0
NVCC    ?= nvcc
ifeq ($(CUDA),1)
BUILD   ?= build-cuda
endif
ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     ?= -O2 -g
LDSAN   :=
endif

CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT) -Iinclude -Isrc -pthread $(EXTRA_CFLAGS)
LDLIBS  := $(EXTRA_LDFLAGS) -lpcre2-8 -ljansson -lmicrohttpd -lm -pthread

# Layers (src/README.md): the library is base, format, model, text, backend,
# engine and api; tools/ and server/ are separate libraries above greta.h;
# cli/ on top.
LIB_DIRS := base format model text text/jinja backend backend/cpu backend/ref engine api
LIB_SRC  := $(sort $(foreach d,$(LIB_DIRS),$(wildcard src/$(d)/*.c)))
TOOLS_SRC := $(sort $(wildcard src/tools/*.c))
SERVER_SRC := $(sort $(wildcard src/server/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_SUPPORT_SRC := $(sort $(wildcard tests/support/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)

# The cuda backend (src/backend/cuda): C through $(CC), kernels through nvcc
# for sm_90 with PTX for newer GPUs; --fmad=false keeps a*b+c unfused so the
# kernels' dequantization rounds as quant.c does (docs/cuda.md).
ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC)))
CU_SRC    := $(sort $(wildcard src/backend/cuda/*.cu))
LIB_SRC   += $(sort $(wildcard src/backend/cuda/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_SRC:%.cu=$(BUILD)/%.o)
CFLAGS    += -DGRETA_CUDA
NVCCFLAGS ?= -O3 -std=c++17 --fmad=false -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
endif
# The library's objects are position-independent (libgreta.so) and hidden by
# default: greta.h marks what it declares visible, so only greta_* is exported.
# They depend on a file holding these flags, so objects compiled without them
# (a build tree from before) are rebuilt.
LIB_OBJ_FLAGS := -fPIC -fvisibility=hidden
$(LIB_OBJ): OBJ_FLAGS := $(LIB_OBJ_FLAGS)
$(LIB_OBJ): $(BUILD)/lib-objects.flags
TOOLS_OBJ := $(TOOLS_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/server_page.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test test-unit test-cli test-san setup fetch-model clean install
all: $(BUILD)/greta $(BUILD)/libgreta.a $(BUILD)/libgreta.so

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(OBJ_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/lib-objects.flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(LIB_OBJ_FLAGS)' | cmp -s - $@ || echo '$(LIB_OBJ_FLAGS)' >$@
.PHONY: FORCE

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -Iinclude -Isrc -Xcompiler -Wall,-Wextra,-Werror,-fPIC,-fvisibility=hidden -MMD -MP -c $< -o $@

# What the CLI, the tools and the tests link: every library object with its
# internal symbols (the tests call gguf_*, tokenizer_*, ... directly).
$(BUILD)/libgreta-internal.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The public libraries. libgreta.a is one relocatable object whose hidden
# (internal) symbols are made local, so a program that also defines, say,
# gguf_find_key (ggml does) links with it; libgreta.so exports greta_* only.
VERSION   := $(shell sed -n 's/^\#define GRETA_VERSION "\(.*\)"/\1/p' include/greta.h)
SOVERSION := 0
$(BUILD)/libgreta.o: $(LIB_OBJ)
	$(LD) -r -o $@ $^
	objcopy --localize-hidden $@

$(BUILD)/libgreta.a: $(BUILD)/libgreta.o
	@rm -f $@
	ar rcs $@ $<

$(BUILD)/libgreta.so: $(LIB_OBJ)
	$(CC) -shared $(LDSAN) -Wl,-soname,libgreta.so.$(SOVERSION) -Wl,--no-undefined -o $@ $^ $(LDLIBS)
	ln -sf libgreta.so $(BUILD)/libgreta.so.$(SOVERSION) # the soname, for programs linked in the tree

$(BUILD)/libgreta-tools.a: $(TOOLS_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The chat page (src/server/page.html) as a C byte array, made with od and sed.
$(BUILD)/gen/server_page.c: src/server/page.html
	@mkdir -p $(dir $@)
	{ echo '/* generated from src/server/page.html by the Makefile: do not edit */'; \
	  echo '#include "server/page.h"'; \
	  echo 'const unsigned char server_page_html[] = {'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t server_page_html_len = sizeof server_page_html;'; } >$@.tmp && mv $@.tmp $@

$(BUILD)/gen/server_page.o: $(BUILD)/gen/server_page.c
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libgreta-server.a: $(SERVER_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/greta: $(CLI_OBJ) $(BUILD)/libgreta-server.a $(BUILD)/libgreta-tools.a $(BUILD)/libgreta-internal.a
	$(CC) $(LDSAN) -o $@ $(CLI_OBJ) $(BUILD)/libgreta-server.a $(BUILD)/libgreta-tools.a $(BUILD)/libgreta-internal.a $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_SUPPORT_OBJ) $(BUILD)/libgreta-server.a $(BUILD)/libgreta-tools.a $(BUILD)/libgreta-internal.a
	$(CC) $(LDSAN) -o $@ $< $(TEST_SUPPORT_OBJ) $(BUILD)/libgreta-server.a $(BUILD)/libgreta-tools.a $(BUILD)/libgreta-internal.a $(LDLIBS)

tests-build: $(BUILD)/greta $(BUILD)/libgreta.a $(BUILD)/libgreta.so $(TEST_BIN)

test: tests-build
	BUILD=$(BUILD) bash tests/run_tests.sh

test-san:
	$(MAKE) SAN=1 test

setup:
	@bash scripts/setup/install-deps

fetch-model:
	bash scripts/fetch-model

clean:
	rm -rf build build-san build-cuda

# install: the CLI, libgreta.a, libgreta.so (libgreta.so.VERSION with the
# soname link libgreta.so.0 and the link-time name libgreta.so), greta.h,
# and greta.pc for pkg-config (docs/api.md, examples/generate.c).
PREFIX  ?= /usr/local
DESTDIR ?=
install: $(BUILD)/greta $(BUILD)/libgreta.a $(BUILD)/libgreta.so
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(BUILD)/greta $(DESTDIR)$(PREFIX)/bin/greta
	install -m 644 $(BUILD)/libgreta.a $(DESTDIR)$(PREFIX)/lib/libgreta.a
	install -m 755 $(BUILD)/libgreta.so $(DESTDIR)$(PREFIX)/lib/libgreta.so.$(VERSION)
	ln -sf libgreta.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libgreta.so.$(SOVERSION)
	ln -sf libgreta.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libgreta.so
	install -m 644 include/greta.h $(DESTDIR)$(PREFIX)/include/greta.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' greta.pc.in >$(DESTDIR)$(PREFIX)/lib/pkgconfig/greta.pc

-include $(LIB_OBJ:.o=.d) $(TOOLS_OBJ:.o=.d) $(SERVER_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d) $(TEST_SUPPORT_OBJ:.o=.d)

# fuzz: libFuzzer harness for the GGUF reader (clang); fuzz/run.sh runs it, docs/fuzzing.md records runs.
.PHONY: fuzz
fuzz: build/fuzz/fuzz_gguf
build/fuzz/fuzz_gguf: fuzz/fuzz_gguf.c src/format/gguf.c src/format/gguf.h src/format/quant.c src/format/quant.h src/base/errors.c
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc -o $@ fuzz/fuzz_gguf.c src/format/gguf.c src/format/quant.c src/base/errors.c -lm
