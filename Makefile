# portshaper build. `make` builds the BPF object and the TypeScript;
# `make setup` installs what a fresh Debian machine lacks (idempotent).
SHELL := /bin/bash
CLANG ?= clang
ARCH_INCLUDE := /usr/include/$(shell uname -m)-linux-gnu
BPF_CFLAGS := -O2 -g -target bpf -mcpu=v3 -Wall -Werror -I$(ARCH_INCLUDE) -Ibpf
BPF_OBJ := bpf/portshaper.bpf.o
BPF_SRC := bpf/portshaper.bpf.c bpf/portshaper.h $(wildcard bpf/lib/*.h)
TS_SRC := $(shell find src -name '*.ts') tsconfig.json package.json

.PHONY: all setup build bpf ts test test-unit run bench demo clean image-test
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

# Benchmarks against nftables limit, HTB and TBF, and the agent process at up to
# 65,536 rules (root; < 20 min, QUICK=1 < 3 min, plus the agent section: about
# 2 min at issue 10's targets, up to 7 while its operations take seconds).
# Report: bench/results/latest.md (+ JSON and SVG charts).
bench: setup build
	npx vite-node bench/main.ts -- $(if $(QUICK),--quick)
	npx vite-node bench/clients.ts -- $(if $(QUICK),--quick)

# Live demo (root, < 1 min): agent on a veth pair, traffic on a limited and
# an unlimited port, the limit lowered through the API halfway.
demo: setup build
	npx vite-node scripts/demo.ts

# Build the container image and run it on the real kernel (root; ~5 min cold,
# ~2 min with the cached base; not part of make test): scripts/image-test.sh.
image-test: setup build
	scripts/image-test.sh

test-unit: node_modules/.package-lock.json
	npx vitest run test/unit

clean:
	rm -rf dist $(BPF_OBJ)

# ---------------------------------------------------------------------------
# Install on a host (docs/operations.md). `sudo make install` puts the agent,
# its production node_modules and the BPF object in $(PKGLIBDIR), a
# `portshaper` command in $(BINDIR) and the systemd unit in $(UNITDIR); the
# bundled policy becomes $(SYSCONFDIR)/portshaper/policy.yaml only if there is
# none. DESTDIR stages the whole tree elsewhere (packaging, CI).
PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
PKGLIBDIR ?= $(PREFIX)/lib/portshaper
DOCDIR ?= $(PREFIX)/share/doc/portshaper
SYSCONFDIR ?= /etc
STATEDIR ?= /var/lib/portshaper
UNITDIR ?= /lib/systemd/system
# The node that runs the agent, found now so the service does not depend on PATH.
NODE ?= $(shell command -v node)
POLICY := $(SYSCONFDIR)/portshaper/policy.yaml
# systemctl only acts on the running system: not for a DESTDIR, not without systemd.
LIVE_SYSTEMD = [[ -z "$(DESTDIR)" && -d /run/systemd/system ]]

.PHONY: install uninstall
install: build
	rm -rf $(DESTDIR)$(PKGLIBDIR)
	install -d $(DESTDIR)$(PKGLIBDIR)/bpf $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/portshaper
	install -d -m 0700 $(DESTDIR)$(STATEDIR)
	cp -r dist $(DESTDIR)$(PKGLIBDIR)/dist
	find $(DESTDIR)$(PKGLIBDIR)/dist \( -name '*.map' -o -name .built \) -delete
	install -m 0644 $(BPF_OBJ) $(DESTDIR)$(PKGLIBDIR)/bpf/
	install -m 0644 package.json package-lock.json $(DESTDIR)$(PKGLIBDIR)/
	npm install --prefix $(DESTDIR)$(PKGLIBDIR) --omit=dev --no-audit --no-fund --loglevel=error
	printf '#!/bin/sh\n# portshaper command line, installed by make install.\nexec %s %s/dist/cli/main.js "$$@"\n' \
	  "$(NODE)" "$(PKGLIBDIR)" > $(DESTDIR)$(BINDIR)/portshaper
	chmod 0755 $(DESTDIR)$(BINDIR)/portshaper
	sed -e 's|/usr/bin/portshaper|$(BINDIR)/portshaper|' -e 's|/etc/portshaper/|$(SYSCONFDIR)/portshaper/|' \
	  -e 's|/usr/share/doc/portshaper/|$(DOCDIR)/|' packaging/portshaper.service > $(DESTDIR)$(UNITDIR)/portshaper.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/portshaper.service
	install -m 0644 README.md docs/operations.md docs/errors.md $(DESTDIR)$(DOCDIR)/
	@if [[ -e $(DESTDIR)$(POLICY) ]]; then echo "kept $(DESTDIR)$(POLICY)"; \
	  else install -m 0644 examples/policy.yaml $(DESTDIR)$(POLICY) && echo "installed $(DESTDIR)$(POLICY) (loopback only: edit it)"; fi
	@if $(LIVE_SYSTEMD); then systemctl daemon-reload; \
	  if systemctl -q is-active portshaper; then echo "portshaper is running the old version: systemctl restart portshaper"; \
	  else echo "start it with: systemctl enable --now portshaper"; fi; fi

# Removes what install added. The policy stays if it differs from the bundled
# example, and $(STATEDIR) if anything is in it (the API token), unless
# PURGE=1. The limits stay in force unless DETACH=1, which runs
# `portshaper detach --purge` after stopping the service.
uninstall:
	@if $(LIVE_SYSTEMD) && [[ -e $(UNITDIR)/portshaper.service ]]; then systemctl disable --now portshaper; fi
	@if [[ "$(DETACH)" == 1 ]]; then \
	  if [[ -n "$(DESTDIR)" ]]; then echo "DETACH=1 ignored with DESTDIR"; \
	  elif [[ -e $(POLICY) ]]; then $(BINDIR)/portshaper detach --policy $(POLICY) --purge; \
	  else $(BINDIR)/portshaper detach --purge; fi; fi
	rm -rf $(DESTDIR)$(PKGLIBDIR) $(DESTDIR)$(DOCDIR)
	rm -f $(DESTDIR)$(BINDIR)/portshaper $(DESTDIR)$(UNITDIR)/portshaper.service
	@if [[ "$(PURGE)" == 1 ]]; then rm -rf $(DESTDIR)$(SYSCONFDIR)/portshaper $(DESTDIR)$(STATEDIR); \
	else \
	  if cmp -s examples/policy.yaml $(DESTDIR)$(POLICY); then rm -f $(DESTDIR)$(POLICY); fi; \
	  rmdir $(DESTDIR)$(SYSCONFDIR)/portshaper $(DESTDIR)$(STATEDIR) 2>/dev/null || true; \
	  for kept in $(DESTDIR)$(SYSCONFDIR)/portshaper $(DESTDIR)$(STATEDIR); do \
	    if [[ -e $$kept ]]; then echo "kept $$kept (PURGE=1 removes it)"; fi; done; fi
	@if $(LIVE_SYSTEMD); then systemctl daemon-reload; fi
