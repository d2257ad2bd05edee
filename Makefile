# portshaper build. `make` builds the BPF object and the TypeScript;
# `make setup` installs what a fresh Debian machine lacks (idempotent).
SHELL := /bin/bash
CLANG ?= clang
ARCH_INCLUDE := /usr/include/$(shell uname -m)-linux-gnu
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -I$(ARCH_INCLUDE) -Ibpf
BPF_OBJ := bpf/portshaper.bpf.o
BPF_SRC := bpf/portshaper.bpf.c bpf/portshaper.h $(wildcard bpf/lib/*.h)
TS_SRC := $(shell find src -name '*.ts') tsconfig.json package.json

.PHONY: all setup build bpf ts test test-unit run bench clean
all: build

setup:
	@scripts/setup.sh

node_modules/.package-lock.json: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

build: bpf ts
bpf: $(BPF_OBJ)
$(BPF_OBJ): $(BPF_SRC)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

ts: dist/.built
dist/.built: $(TS_SRC) node_modules/.package-lock.json
	npx tsc -p tsconfig.json
	@touch $@

# The whole suite: unit tests and kernel tests (root). CI=true makes every
# kernel test mandatory.
test: setup build
	npx vitest run

# Set up, build and run the agent in the foreground on the bundled policy
# (shapes loopback only). Ctrl-C stops it; the limits stay until
# `node dist/cli/main.js detach`.
run: setup build
	node dist/cli/main.js agent --policy examples/policy.yaml

test-unit: node_modules/.package-lock.json
	npx vitest run test/unit

clean:
	rm -rf dist $(BPF_OBJ)
