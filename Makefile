# The two commands of README.md, and the rest of the daily work.
PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift

.PHONY: run test build release bench bench-peers install clean libcomet install-libcomet

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
	$(SWIFT) build -c release --product cometd
	$(SWIFT) test --skip-build --disable-swift-testing
	libcomet/tests/run.sh .build/release/cometd

build:
	scripts/ensure-deps
	$(SWIFT) build

release:
	scripts/ensure-deps
	$(SWIFT) build -c release --product cometd
	$(SWIFT) build -c release --product comet

## Measure throughput, latency and memory (release build; see README).
bench:
	scripts/ensure-deps
	$(SWIFT) build -c release --product cometd
	$(SWIFT) build -c release --product comet-bench
	.build/release/comet-bench --cometd .build/release/cometd

## comet next to Redis, ZeroMQ, NATS and dbus-broker in one run (installs them; see README).
bench-peers:
	scripts/ensure-deps peers
	$(SWIFT) build -c release --product cometd
	bench/peers/run .build/release/cometd

install: release
	install -D -m 0755 .build/release/cometd $(DESTDIR)$(PREFIX)/bin/cometd
	install -D -m 0755 .build/release/comet $(DESTDIR)$(PREFIX)/bin/comet
	install -D -m 0644 systemd/cometd.socket $(DESTDIR)$(PREFIX)/lib/systemd/system/cometd.socket
	sed 's|/usr/local/bin/cometd|$(PREFIX)/bin/cometd|' systemd/cometd.service > cometd.service.tmp
	install -D -m 0644 cometd.service.tmp $(DESTDIR)$(PREFIX)/lib/systemd/system/cometd.service
	rm -f cometd.service.tmp

clean:
	rm -rf .build
