import Comet
import CometWire
import Foundation
import XCTest

/// Channels across hosts: a real nats-server with JetStream on 127.0.0.1 and two "hosts", each a
/// cometd and its comet-bridge — producers on A (whose bridge exports), readers on B (whose
/// bridge imports).
final class FederationTests: XCTestCase {
    var nats: NATSServerProcess!
    var hosts: [Host] = []

    /// One host: a cometd and the comet-bridge beside it.
    final class Host: @unchecked Sendable {
        var daemon: Daemon
        var bridge: BridgeProcess
        var socketPath: String { daemon.socketPath }
        /// Daemons stopped and replaced: kept until the test ends (their directory holds the socket).
        var retired: [Daemon] = []

        /// A new cometd on the same socket, replacing the stopped one.
        func restartDaemon() throws {
            retired.append(daemon)
            daemon = try Daemon(arguments: ["--log-level", "debug"], socket: daemon.socketPath)
        }

        init(daemon: Daemon, bridge: BridgeProcess) {
            self.daemon = daemon
            self.bridge = bridge
        }
    }

    override func setUpWithError() throws {
        nats = try NATSServerProcess()
        try nats.start()
    }

    override func tearDown() {
        // Every bridge and daemon still running stops cleanly: a crash at shutdown (NATS links
        // closing) fails the test.
        for host in hosts {
            if host.bridge.process != nil {
                let status = host.bridge.stop()
                XCTAssertEqual(status, 0, "comet-bridge did not stop cleanly:\n\(host.bridge.log.suffix(3000))")
            }
            if host.daemon.process.isRunning {
                let status = host.daemon.stop()
                XCTAssertEqual(status, 0, "cometd did not stop cleanly:\n\(host.daemon.log.suffix(3000))")
            }
        }
        hosts = []
        nats = nil
    }

    /// A cometd and a bridge with this configuration (`SERVER` stands for the NATS URL).
    func host(_ config: String, url: String? = nil, daemonArguments: [String] = []) throws -> Host {
        let daemon = try Daemon(arguments: ["--log-level", "debug"] + daemonArguments)
        let bridge = try BridgeProcess(config: config.replacingOccurrences(of: "SERVER", with: url ?? nats.url), socketPath: daemon.socketPath)
        let host = Host(daemon: daemon, bridge: bridge)
        hosts.append(host)
        return host
    }

    static let exporter = """
        [nats hub]
        url = SERVER
        [export feed*]
        storage = memory
        """

    static let importer = """
        [nats hub]
        url = SERVER
        [import remote.feed]
        subject = comet.feed
        stall-after = 2
        """

    /// Reads a subscription with a deadline: the subscription is cancelled when it passes.
    final class Reader: @unchecked Sendable {
        let subscription: CometSubscription
        var iterator: CometSubscription.AsyncIterator

        init(_ subscription: CometSubscription) {
            self.subscription = subscription
            iterator = subscription.makeAsyncIterator()
        }

        func take(_ count: Int, within seconds: Double = 30) async throws -> [CometMessage] {
            let subscription = self.subscription
            let timer = Task {
                try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                try? await subscription.cancel()
            }
            defer { timer.cancel() }
            var got: [CometMessage] = []
            while got.count < count, let m = try await iterator.next() { got.append(m) }
            return got
        }

        /// What ends the subscription: nil when it ends normally (CLOSED), else the error.
        func end(within seconds: Double = 30) async -> Error? {
            do {
                _ = try await take(Int.max, within: seconds)
                return nil
            } catch {
                return error
            }
        }
    }

    /// Waits until A's export of its only channel has at least `count` messages acknowledged by
    /// JetStream and nothing left to send.
    func waitExported(_ producer: CometClient, _ count: UInt64) async throws {
        for _ in 0..<400 {
            if let export = try await producer.stats().exports.first, export.acknowledged >= count, export.backlog == 0 { return }
            try await Task.sleep(nanoseconds: 25_000_000)
        }
        XCTFail("the export did not reach \(count) acknowledged messages")
    }

    func payloads(_ range: ClosedRange<Int>) -> [[UInt8]] { range.map { Array("m\($0)".utf8) } }

    /// Reads `count` messages of an import from `first` on, as a reader that resumes would: told
    /// the import is stalled (or missing while its cometd or bridge restarts), it subscribes again
    /// after the last message it got.
    static func readResuming(_ client: CometClient, _ name: String, from first: UInt64, epoch: UInt64, count: Int, within seconds: Double = 60) async throws -> [CometMessage] {
        var got: [CometMessage] = []
        let deadline = Date().addingTimeInterval(seconds)
        while got.count < count, Date() < deadline {
            do {
                let next = first + UInt64(got.count)
                let reader = Reader(try await client.subscribe(name, from: .from(next), epoch: epoch, wait: true))
                got += try await reader.take(count - got.count, within: max(1, deadline.timeIntervalSinceNow))
            } catch let error as CometError where error.code == .upstreamUnreachable || error.code == .noSuchChannel {
                try await Task.sleep(nanoseconds: 200_000_000)
            }
        }
        return got
    }

    /// Waits until `name` is listed as an import (its bridge declared it).
    func waitDeclared(_ client: CometClient, _ name: String) async throws {
        for _ in 0..<400 {
            if try await client.channels().contains(where: { $0.name == name && $0.imported }) { return }
            try await Task.sleep(nanoseconds: 25_000_000)
        }
        XCTFail("the import \(name) was not declared")
    }

    // MARK: Exactly once, in order

    func testEveryMessageExactlyOnceInOrderFromAToReadersOnB() async throws {
        let a = try host(Self.exporter)
        let b = try host(Self.importer + "\n[import remote.feed.latest]\nsubject = comet.feed\nnewest = yes\n")
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 100_000)
        try await feed.push(batch: payloads(1...10))
        try await waitExported(producer, 10)

        // The import, read from the oldest message JetStream keeps, with A's numbers and epoch.
        let r1 = try await CometClient.connect(to: b.socketPath)
        let imported = try await r1.subscribe("remote.feed", from: .oldest, wait: true)
        // A latest-value import of the same subject (its own connection: a subscription nobody
        // reads for a while must not hold back the other).
        let r2 = try await CometClient.connect(to: b.socketPath)
        let latest = try await r2.subscribe("remote.feed.latest", wait: true)

        let total = 20_000
        for start in stride(from: 11, through: total, by: 1000) {
            try await feed.push(batch: payloads(start...min(total, start + 999)))
        }
        let reader = Reader(imported)
        let got = try await reader.take(total)
        XCTAssertEqual(got.count, total, "every message")
        XCTAssertTrue(got.map(\.sequence) == Array(1...UInt64(total)), "every message once, in order")
        XCTAssertTrue(got.allSatisfy { $0.string == "m\($0.sequence)" })
        XCTAssertEqual(imported.info.epoch, feed.epoch, "A's epoch")
        var lastValue = CometMessage(sequence: 0, payload: [])
        let latestReader = Reader(latest)
        while lastValue.sequence < UInt64(total), let next = try await latestReader.take(1).first { lastValue = next }
        XCTAssertEqual(lastValue.string, "m\(total)", "the latest value arrives, older ones may be skipped")

        // A's STATS shows what its bridge reports: the export, fully acknowledged.
        var exports: [ExportCounters] = []
        for _ in 0..<100 {
            exports = try await producer.stats().exports
            if exports.first?.acknowledged == UInt64(total) { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTAssertEqual(exports.map(\.name), ["feed"])
        XCTAssertEqual(exports.first?.subject, "comet.feed")
        XCTAssertEqual(exports.first?.stream, "COMET_feed")
        XCTAssertEqual(exports.first?.replicas, 1)
        XCTAssertEqual(exports.first?.server, nats.url)
        XCTAssertEqual(exports.first?.acknowledged, UInt64(total))
        XCTAssertEqual(exports.first?.missed, 0)
        XCTAssertEqual(exports.first?.connected, true)
        // B's STATS shows the imports, and LIST marks them.
        var imports: [ImportCounters] = []
        for _ in 0..<100 {
            imports = try await r1.stats().imports
            if imports.first?.subject == "comet.feed", imports.first?.lastSequence == UInt64(total) { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTAssertEqual(imports.map(\.name), ["remote.feed", "remote.feed.latest"])
        XCTAssertEqual(imports.first?.state, .live)
        XCTAssertEqual(imports.first?.fed, true)
        XCTAssertEqual(imports.first?.epoch, feed.epoch)
        XCTAssertEqual(imports.first?.server, nats.url)
        let listed = try await r1.channels().filter(\.imported).map(\.name)
        XCTAssertEqual(listed, ["remote.feed", "remote.feed.latest"])
        // The same through the CLI: tables, JSON (epochs as --epoch reads them) and OpenMetrics.
        let table = try runTool("comet", ["stats", "-s", a.socketPath])
        XCTAssertTrue(table.stdout.contains("EXPORT"), table.stdout)
        XCTAssertTrue(table.stdout.contains("COMET_feed"), table.stdout)
        let importTable = try runTool("comet", ["stats", "-s", b.socketPath])
        XCTAssertTrue(importTable.stdout.contains("IMPORT"), importTable.stdout)
        XCTAssertTrue(importTable.stdout.contains("remote.feed"), importTable.stdout)
        let channels = try runTool("comet", ["channels", "-s", b.socketPath])
        XCTAssertTrue(channels.stdout.contains("import"), channels.stdout)
        XCTAssertTrue(channels.stdout.contains("\(feed.epoch)"), "decimal epoch:\n\(channels.stdout)")
        let json = try runTool("comet", ["stats", "--json", "-s", a.socketPath])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let jsonExports = try XCTUnwrap(object["exports"] as? [[String: Any]])
        XCTAssertEqual(jsonExports.first?["acknowledged"] as? Int, total)
        XCTAssertEqual(jsonExports.first?["epoch"] as? String, "\(feed.epoch)")
        let resumed = try runTool("comet", ["listen", "-s", b.socketPath, "remote.feed", "--from", "\(total - 1)", "--epoch", "\(feed.epoch)", "--count", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(resumed.stdout, "m\(total - 1)\nm\(total)\n")
        let metrics = try runTool("comet", ["stats", "--openmetrics", "-s", b.socketPath])
        let file = b.daemon.directory.appendingPathComponent("metrics.txt")
        try metrics.stdout.write(to: file, atomically: true, encoding: .utf8)
        let script = """
            import sys
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
            families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
            last = families['comet_import_last_sequence'].samples
            assert last[0].labels == {'channel': 'remote.feed', 'subject': 'comet.feed'} and last[0].value == \(total), last
            assert families['comet_import_stalled'].samples[0].value == 0
            print('ok')
            """
        let parsed = try runTool("/usr/bin/python3", ["-c", script, file.path], absolute: true)
        XCTAssertEqual(parsed.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "ok", parsed.stderr)

        // Closing on A ends the readers on B after the last message (CLOSED).
        let tail = Reader(try await r1.subscribe("remote.feed", from: .from(UInt64(total))))
        _ = try await feed.close()
        _ = try await tail.take(1)
        let end = await tail.end()
        XCTAssertNil(end, "CLOSED, not \(String(describing: end))")
        await r1.close()
        await r2.close()
        await producer.close()
    }

    // MARK: NATS restarted

    /// Memory storage: the restarted server has lost every stream. A's export republishes what
    /// its ring still holds; B's import resubscribes and skips what it had: no gap.
    func testNATSRestartedMidStreamNoGap() async throws {
        let a = try host(Self.exporter)
        let b = try host(Self.importer.replacingOccurrences(of: "stall-after = 2", with: "stall-after = 60"))
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 10_000)
        let reader = try await CometClient.connect(to: b.socketPath)
        let sub = try await reader.subscribe("remote.feed", wait: true)
        let r = Reader(sub)
        try await feed.push(batch: payloads(1...500))
        let first = try await r.take(500)
        XCTAssertEqual(first.map(\.sequence), Array(1...500))

        nats.kill()
        try await feed.push(batch: payloads(501...1000))  // while NATS is down: buffered in A's ring
        try nats.start()
        try await feed.push(batch: payloads(1001...1500))
        let rest = try await r.take(1000, within: 60)
        XCTAssertTrue(rest.map(\.sequence) == Array(501...1500), "no gap, no duplicate across the restart: \(rest.first?.sequence ?? 0)…\(rest.last?.sequence ?? 0), \(rest.count)")
        XCTAssertTrue(rest.allSatisfy { $0.string == "m\($0.sequence)" })
        await reader.close()
        await producer.close()
    }

    /// Memory storage and a small ring: what left A's ring while NATS was down is gone. The
    /// reader on B that needed it gets FULL — never a silent gap — and A counts the loss.
    func testNATSRestartedAfterTheRingMovedOnGivesFull() async throws {
        let a = try host(Self.exporter)
        let b = try host(Self.importer.replacingOccurrences(of: "stall-after = 2", with: "stall-after = 60"))
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 100)
        let reader = try await CometClient.connect(to: b.socketPath)
        let sub = try await reader.subscribe("remote.feed", wait: true)
        let r = Reader(sub)
        try await feed.push(batch: payloads(1...50))
        let got = try await r.take(50)
        XCTAssertEqual(got.map(\.sequence), Array(1...50))

        nats.kill()
        try await feed.push(batch: payloads(51...400))  // A's ring keeps 301...400
        try nats.start()
        let end = await r.end(within: 60)
        guard let full = end as? ChannelFull else { return XCTFail("expected FULL, got \(String(describing: end))") }
        XCTAssertEqual(full.firstAvailable, 301)
        // A later reader reads on from what is there.
        let again = try await reader.subscribe("remote.feed", from: .oldest)
        let rest = try await Reader(again).take(100)
        XCTAssertEqual(rest.map(\.sequence), Array(301...400))
        var missed: UInt64 = 0
        for _ in 0..<100 {
            missed = try await producer.stats().exports.first?.missed ?? 0
            if missed == 250 { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTAssertEqual(missed, 250, "51...300 never reached JetStream")
        await reader.close()
        await producer.close()
    }

    // MARK: NATS unreachable

    func testUnreachableNATSIsSaidOnceAndCaughtUpLater() async throws {
        let closed = try NATSServerProcess.freePort()
        let late = try NATSServerProcess(port: closed)
        // An exporter whose server is down at its start works locally, says so once, and
        // catches up when the server comes.
        let a = try host(Self.exporter, url: late.url)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed")
        try await feed.push(batch: payloads(1...20))
        let local = try await producer.subscribe("feed", from: .oldest)
        let got = try await Reader(local).take(20)
        XCTAssertEqual(got.count, 20, "the local channel works without NATS")
        try await Task.sleep(nanoseconds: 3_000_000_000)
        XCTAssertEqual(a.bridge.log.components(separatedBy: "NATS is not reachable").count - 1, 1, "said once:\n\(a.bridge.log)")
        let stats = try await producer.stats()
        XCTAssertEqual(stats.exports.first?.connected, false)
        // An importer whose server is down: a reader is answered within the stall bound, not
        // parked for ever; with --wait it waits for the channel.
        let b = try host(Self.importer, url: late.url)
        let remote = try await CometClient.connect(to: b.socketPath)
        try await waitDeclared(remote, "remote.feed")
        let askedAt = Date()
        do {
            _ = try await remote.subscribe("remote.feed")
            XCTFail("subscribed while NATS is down")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .upstreamUnreachable, error.message)
        }
        XCTAssertLessThan(Date().timeIntervalSince(askedAt), 10, "answered within the stall bound")
        let sub = try await remote.subscribe("remote.feed", wait: true)
        XCTAssertTrue(sub.info.waiting)
        try late.start()
        let later = try await Reader(sub).take(20, within: 60)
        XCTAssertEqual(later.map(\.sequence), Array(1...20), "buffered, then exported")
        await remote.close()
        await producer.close()
    }

    // MARK: Configuration

    func testConfigurationMistakesAreRefusedWithFileAndLine() throws {
        let directory = try Daemon.temporaryDirectory()
        let file = directory.appendingPathComponent("bad.conf")
        try "[nats hub]\nurl = nats://127.0.0.1:4222\n[export feed*]\nstorage = disk\n".write(to: file, atomically: true, encoding: .utf8)
        let result = try runTool("comet-bridge", ["--check", "--config", file.path])
        XCTAssertEqual(result.status, 78)
        XCTAssertTrue(result.stderr.contains("bad.conf:4: storage is memory or file"), result.stderr)
        try "[nats hub]\nurl = nats://a:4222, nats://b:4222,nats://c:4222\n[export feed*]\nreplicas = 3\n".write(to: file, atomically: true, encoding: .utf8)
        let good = try runTool("comet-bridge", ["--check", "--config", file.path])
        XCTAssertEqual(good.status, 0, good.stderr)
        try "[nats hub]\nurl = nats://a:4222\n[export feed*]\nreplicas = 7\n".write(to: file, atomically: true, encoding: .utf8)
        let replicas = try runTool("comet-bridge", ["--check", "--config", file.path])
        XCTAssertEqual(replicas.status, 78)
        XCTAssertTrue(replicas.stderr.contains("bad.conf:4: 'replicas' must be a whole number in 1...5"), replicas.stderr)
        // An older cometd.conf with federation sections does not stop cometd: it says where they went.
        try "[nats hub]\nurl = nats://127.0.0.1:4222\n[export feed*]\n".write(to: file, atomically: true, encoding: .utf8)
        let daemon = try Daemon(arguments: ["--config", file.path])
        XCTAssertTrue(daemon.log.contains("comet-bridge"), daemon.log)
        XCTAssertEqual(daemon.stop(), 0)
    }
}
