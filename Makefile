# greta: build the library, the CLI and the tests.
#   make            build/greta (CPU backends; CUDA is a separate target)
#   make test       build and run the whole suite (unit tests + CLI tests)
#   make test-san   the suite again under AddressSanitizer + UndefinedBehaviorSanitizer
#   make setup      install the Debian packages the build needs (scripts/setup/install-deps)
#   make fetch-model  download the default model into models/
#   make SAN=1      sanitizer build into build-san/
#   make CUDA=1     adds the cuda backend (nvcc, sm_90 + PTX) into build-cuda/
#                   (docs/cuda.md); EXTRA_CFLAGS / EXTRA_LDFLAGS add paths

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
LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lstdc++
endif
TOOLS_OBJ := $(TOOLS_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/server_page.o
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test test-unit test-cli test-san setup fetch-model clean
all: $(BUILD)/greta

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -Iinclude -Isrc -Xcompiler -Wall,-Wextra,-Werror -MMD -MP -c $< -o $@

$(BUILD)/libgreta.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

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

$(BUILD)/greta: $(CLI_OBJ) $(BUILD)/libgreta-server.a $(BUILD)/libgreta-tools.a $(BUILD)/libgreta.a
	$(CC) $(LDSAN) -o $@ $(CLI_OBJ) $(BUILD)/libgreta-server.a $(BUILD)/libgreta-tools.a $(BUILD)/libgreta.a $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_SUPPORT_OBJ) $(BUILD)/libgreta-server.a $(BUILD)/libgreta-tools.a $(BUILD)/libgreta.a
	$(CC) $(LDSAN) -o $@ $< $(TEST_SUPPORT_OBJ) $(BUILD)/libgreta-server.a $(BUILD)/libgreta-tools.a $(BUILD)/libgreta.a $(LDLIBS)

tests-build: $(BUILD)/greta $(TEST_BIN)

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

-include $(LIB_OBJ:.o=.d) $(TOOLS_OBJ:.o=.d) $(SERVER_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d) $(TEST_SUPPORT_OBJ:.o=.d)

# fuzz: libFuzzer harness for the GGUF reader (clang); fuzz/run.sh runs it, docs/fuzzing.md records runs.
.PHONY: fuzz
fuzz: build/fuzz/fuzz_gguf
build/fuzz/fuzz_gguf: fuzz/fuzz_gguf.c src/format/gguf.c src/format/gguf.h src/format/quant.c src/format/quant.h src/base/errors.c
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc -o $@ fuzz/fuzz_gguf.c src/format/gguf.c src/format/quant.c src/base/errors.c -lm
