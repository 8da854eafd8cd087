# The two commands of README.md, and the rest of the daily work.
PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift
# Release binaries carry the Swift runtime: they run where no toolchain is installed.
RELEASE = $(SWIFT) build -c release --static-swift-stdlib

.PHONY: run test test-systemd simulate build release bench bench-peers bench-python install deb clean libcomet install-libcomet

## libcomet (the C library): build, install (PREFIX, DESTDIR).
libcomet:
	$(MAKE) -C libcomet

install-libcomet:
	$(MAKE) -C libcomet install

## Build cometd (release) and run it on its default socket.
run: release
	.build/release/cometd

## Build everything with the tests and run the whole test suite.
test:
	scripts/ensure-deps test
	$(SWIFT) build --build-tests
	$(RELEASE) --product cometd
	$(RELEASE) --product comet
	$(RELEASE) --product comet-sim
	$(RELEASE) --product comet-line-producer
	$(RELEASE) --product comet-bridge
	.build/release/comet-sim --seed 1 --seeds 10 --steps 100000
	SWIFT=$(SWIFT) scripts/test-swift
	libcomet/tests/run.sh .build/release/cometd
	scripts/test-python
	scripts/test-install
	scripts/test-systemd || [ $$? = 77 ]

## The deterministic simulation of the daemon core (docs/FLOW.md), longer: SEED, SEEDS, STEPS.
SEED ?= 1
SEEDS ?= 1
STEPS ?= 1000000
simulate:
	$(RELEASE) --product comet-sim
	.build/release/comet-sim --seed $(SEED) --seeds $(SEEDS) --steps $(STEPS)

## cometd under a real systemd 252 (Debian 12 in a container; root): reload, restart, kill -9,
## then COMET_FAULT_SECONDS (60) of random faults under producers of every kind (COMET_FAULT_SEED).
test-systemd: release libcomet
	$(RELEASE) --product comet-line-producer
	scripts/test-systemd

build:
	scripts/ensure-deps
	$(SWIFT) build

release:
	scripts/ensure-deps
	$(RELEASE) --product cometd
	$(RELEASE) --product comet
	$(RELEASE) --product comet-bridge

## Measure throughput, latency and memory (release build; see README).
bench:
	scripts/ensure-deps
	$(RELEASE) --product cometd
	$(RELEASE) --product comet-bench
	$(RELEASE) --product comet-bridge
	.build/release/comet-bench --cometd .build/release/cometd

## comet next to Redis, ZeroMQ, NATS and dbus-broker in one run (installs them; see README).
bench-peers:
	scripts/ensure-deps peers
	$(RELEASE) --product cometd
	bench/peers/run .build/release/cometd

## The Python client next to redis-py and nats-py (installs their servers and PyPI packages).
bench-python:
	scripts/ensure-deps peers
	$(RELEASE) --product cometd
	bench/python/run .build/release/cometd

## Install (PREFIX, DESTDIR, SYSCONFDIR): binaries, units, libcomet (header, libraries, comet.pc),
## shell completions, man pages, the default policy (SYSCONFDIR/comet/policy.conf, kept if present).
SYSCONFDIR ?= /etc
install: release libcomet
	install -D -m 0755 .build/release/cometd $(DESTDIR)$(PREFIX)/bin/cometd
	install -D -m 0755 .build/release/comet $(DESTDIR)$(PREFIX)/bin/comet
	install -D -m 0644 systemd/cometd.socket $(DESTDIR)$(PREFIX)/lib/systemd/system/cometd.socket
	mkdir -p $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|/usr/local/bin/cometd|$(PREFIX)/bin/cometd|' systemd/cometd.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/cometd.service
	mkdir -p $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	.build/release/comet --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/comet
	.build/release/comet --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_comet
	.build/release/comet --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/comet.fish
	install -D -m 0755 .build/release/comet-bridge $(DESTDIR)$(PREFIX)/bin/comet-bridge
	sed 's|/usr/local/bin/comet-bridge|$(PREFIX)/bin/comet-bridge|' systemd/comet-bridge.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/comet-bridge.service
	install -D -m 0644 systemd/comet-bridge.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/comet-bridge.conf
	install -D -m 0644 systemd/comet-bridge.policy $(DESTDIR)$(PREFIX)/share/doc/comet/examples/policy.d/comet-bridge.conf
	install -D -m 0644 systemd/policy.conf $(DESTDIR)$(PREFIX)/share/doc/comet/examples/policy.conf
	@# The default policy (docs/POLICY.md); a policy file already there is the administrator's: kept.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/comet/policy.conf ]; then \
		echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/comet/policy.conf (the default is $(PREFIX)/share/doc/comet/examples/policy.conf)"; \
	else install -D -m 0644 systemd/policy.conf $(DESTDIR)$(SYSCONFDIR)/comet/policy.conf; fi
	install -D -m 0644 docs/man/comet-bridge.8 $(DESTDIR)$(PREFIX)/share/man/man8/comet-bridge.8
	install -D -m 0644 docs/man/cometd.8 $(DESTDIR)$(PREFIX)/share/man/man8/cometd.8
	install -D -m 0644 docs/man/comet.1 $(DESTDIR)$(PREFIX)/share/man/man1/comet.1
	install -D -m 0644 docs/man/libcomet.3 $(DESTDIR)$(PREFIX)/share/man/man3/libcomet.3
	$(MAKE) -C libcomet install PREFIX=$(PREFIX) DESTDIR=$(abspath $(DESTDIR))

## Debian packages (dpkg-deb): comet (daemon, CLI, units), comet-bridge (NATS), libcomet0, libcomet-dev, in build/deb/.
deb: release libcomet
	scripts/make-deb

clean:
	rm -rf .build
