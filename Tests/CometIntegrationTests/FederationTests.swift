import Comet
import Foundation
import XCTest

/// Channels across hosts: a real nats-server with JetStream on 127.0.0.1 and two cometd daemons
/// as two "hosts" — producers on A (which exports), readers on B (which imports).
final class FederationTests: XCTestCase {
    var nats: NATSServerProcess!
    var daemons: [Daemon] = []

    override func setUpWithError() throws {
        nats = try NATSServerProcess()
        try nats.start()
    }

    override func tearDown() {
        // Every daemon still running stops cleanly: a crash at shutdown (its NATS links closing)
        // fails the test.
        for daemon in daemons where daemon.process.isRunning {
            let status = daemon.stop()
            XCTAssertEqual(status, 0, "cometd did not stop cleanly:\n\(daemon.log.suffix(3000))")
        }
        daemons = []
        nats = nil
    }

    /// A cometd with this configuration text (`SERVER` stands for the NATS URL).
    func daemon(_ config: String, url: String? = nil) throws -> Daemon {
        let file = try Daemon.temporaryDirectory().appendingPathComponent("cometd.conf")
        try config.replacingOccurrences(of: "SERVER", with: url ?? nats.url).write(to: file, atomically: true, encoding: .utf8)
        let daemon = try Daemon(arguments: ["--config", file.path, "--log-level", "debug"])
        daemons.append(daemon)
        return daemon
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

    // MARK: Exactly once, in order

    func testEveryMessageExactlyOnceInOrderFromAToReadersOnB() async throws {
        let a = try daemon(Self.exporter)
        let b = try daemon(Self.importer)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 100_000)
        try await feed.push(batch: payloads(1...10))
        try await waitExported(producer, 10)

        // history: the 3 most recent, then everything live, with A's numbers and epoch.
        let r1 = try await CometClient.connect(to: b.socketPath)
        let external = try await r1.subscribeExternal(address: "\(nats.url)/comet.feed", channel: "feed", history: 3)
        XCTAssertEqual(external.info.epoch, feed.epoch, "A's epoch")
        // A config-declared import, read from the oldest message JetStream keeps.
        let r2 = try await CometClient.connect(to: b.socketPath)
        // (B may not have seen the stream yet: wait for the name, as for a local channel.)
        let imported = try await r2.subscribe("remote.feed", from: .oldest, wait: true)

        let total = 20_000
        for start in stride(from: 11, through: total, by: 1000) {
            try await feed.push(batch: payloads(start...min(total, start + 999)))
        }
        let externalReader = Reader(external)
        let got1 = try await externalReader.take(total - 7)
        XCTAssertEqual(got1.map(\.sequence), Array(8...UInt64(total)), "history 3, then every message once, in order")
        XCTAssertEqual(got1.last?.string, "m\(total)")
        XCTAssertTrue(got1.allSatisfy { $0.string == "m\($0.sequence)" })
        let got2 = try await Reader(imported).take(total)
        XCTAssertEqual(got2.map(\.sequence), Array(1...UInt64(total)))
        XCTAssertEqual(imported.info.epoch, feed.epoch)

        // A's STATS shows the export, fully acknowledged.
        var exports: [ExportCounters] = []
        for _ in 0..<100 {
            exports = try await producer.stats().exports
            if exports.first?.acknowledged == UInt64(total) { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTAssertEqual(exports.map(\.name), ["feed"])
        XCTAssertEqual(exports.first?.subject, "comet.feed")
        XCTAssertEqual(exports.first?.acknowledged, UInt64(total))
        XCTAssertEqual(exports.first?.missed, 0)
        XCTAssertEqual(exports.first?.connected, true)
        // The same through the CLI: a table, JSON and OpenMetrics (checked by a real parser).
        let table = try runTool("comet", ["stats", "-s", a.socketPath])
        XCTAssertTrue(table.stdout.contains("EXPORT"), table.stdout)
        XCTAssertTrue(table.stdout.contains("comet.feed"), table.stdout)
        let json = try runTool("comet", ["stats", "--json", "-s", a.socketPath])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let jsonExports = try XCTUnwrap(object["exports"] as? [[String: Any]])
        XCTAssertEqual(jsonExports.first?["acknowledged"] as? Int, total)
        let metrics = try runTool("comet", ["stats", "--openmetrics", "-s", a.socketPath])
        let file = a.directory.appendingPathComponent("metrics.txt")
        try metrics.stdout.write(to: file, atomically: true, encoding: .utf8)
        let script = """
            import sys
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
            families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
            acked = families['comet_export_acknowledged_messages'].samples
            assert acked[0].labels == {'channel': 'feed', 'subject': 'comet.feed'} and acked[0].value == \(total), acked
            assert families['comet_export_connected'].samples[0].value == 1
            print('ok')
            """
        let parsed = try runTool("/usr/bin/python3", ["-c", script, file.path], absolute: true)
        XCTAssertEqual(parsed.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "ok", parsed.stderr)

        // Closing on A ends the readers on B after the last message (CLOSED).
        _ = try await feed.close()
        let end = await externalReader.end()
        XCTAssertNil(end, "CLOSED, not \(String(describing: end))")
        XCTAssertEqual(external.info.closedAfter, UInt64(total))
        await r1.close()
        await r2.close()
        await producer.close()
    }

    func testNewestChannelCrossesAsLatestValue() async throws {
        let a = try daemon(Self.exporter)
        let b = try daemon("[nats hub]\nurl = SERVER\n")
        let producer = try await CometClient.connect(to: a.socketPath)
        let state = try await producer.createNewest("feed.state")
        for i in 1...5 { _ = try await state.push("v\(i)") }
        // Wait until JetStream has v5 (the import replays what the stream keeps).
        try await waitExported(producer, 1)
        let reader = try await CometClient.connect(to: b.socketPath)
        let sub = try await reader.subscribeExternal(address: "\(nats.url)/comet.feed.state", channel: "feed.state", newest: true)
        let r = Reader(sub)
        let first = try await r.take(1)
        XCTAssertEqual(first.map(\.string), ["v5"], "the current value at once")
        XCTAssertEqual(first.map(\.sequence), [5])
        _ = try await state.push("v6")
        let got1 = try await r.take(1)
        XCTAssertEqual(got1.map(\.string), ["v6"])
        await reader.close()
        await producer.close()
    }

    // MARK: NATS restarted

    /// Memory storage: the restarted server has lost every stream. A's export republishes what
    /// its ring still holds; B's import resubscribes and skips what it had: no gap.
    func testNATSRestartedMidStreamNoGap() async throws {
        let a = try daemon(Self.exporter)
        let b = try daemon(Self.importer)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 10_000)
        let reader = try await CometClient.connect(to: b.socketPath)
        let sub = try await reader.subscribe("remote.feed", wait: true)
        let r = Reader(sub)
        try await feed.push(batch: payloads(1...500))
        let got2 = try await r.take(500)
        XCTAssertEqual(got2.map(\.sequence), Array(1...500))

        nats.kill()
        try await feed.push(batch: payloads(501...1000))  // while NATS is down: buffered in A's ring
        try nats.start()
        try await feed.push(batch: payloads(1001...1500))
        let rest = try await r.take(1000, within: 60)
        XCTAssertEqual(rest.map(\.sequence), Array(501...1500), "no gap, no duplicate across the restart")
        XCTAssertTrue(rest.allSatisfy { $0.string == "m\($0.sequence)" })
        await reader.close()
        await producer.close()
    }

    /// Memory storage and a small ring: what left A's ring while NATS was down is gone. The
    /// reader on B that needed it gets FULL — never a silent gap — and A counts the loss.
    func testNATSRestartedAfterTheRingMovedOnGivesFull() async throws {
        let a = try daemon(Self.exporter)
        let b = try daemon(Self.importer)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 100)
        let reader = try await CometClient.connect(to: b.socketPath)
        let sub = try await reader.subscribe("remote.feed", wait: true)
        let r = Reader(sub)
        try await feed.push(batch: payloads(1...50))
        let got3 = try await r.take(50)
        XCTAssertEqual(got3.map(\.sequence), Array(1...50))

        nats.kill()
        try await feed.push(batch: payloads(51...400))  // A's ring keeps 301...400
        try nats.start()
        let end = await r.end(within: 60)
        guard let full = end as? ChannelFull else { return XCTFail("expected FULL, got \(String(describing: end))") }
        XCTAssertEqual(full.firstAvailable, 301)
        // A later reader reads on from what is there.
        let again = try await reader.subscribe("remote.feed", from: .oldest)
        let got4 = try await Reader(again).take(100)
        XCTAssertEqual(got4.map(\.sequence), Array(301...400))
        let exports = try await producer.stats().exports
        XCTAssertEqual(exports.first?.missed, 250, "51...300 never reached JetStream")
        await reader.close()
        await producer.close()
    }

    // MARK: Daemons restarted

    func testReadersOfARestartedImporterResumeWithoutGap() async throws {
        let a = try daemon(Self.exporter)
        var b = try daemon(Self.importer)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 10_000)
        try await feed.push(batch: payloads(1...100))
        var reader = try await CometClient.connect(to: b.socketPath)
        let sub = try await reader.subscribe("remote.feed", from: .oldest, wait: true)
        let got5 = try await Reader(sub).take(100)
        XCTAssertEqual(got5.map(\.sequence), Array(1...100))
        let epoch = sub.info.epoch
        await reader.close()

        b.stop()
        try await feed.push(batch: payloads(101...300))  // while B is down
        b = try daemon(Self.importer)
        reader = try await CometClient.connect(to: b.socketPath)
        let resumed = try await reader.subscribe("remote.feed", from: .from(101), epoch: epoch)
        let r = Reader(resumed)
        try await feed.push(batch: payloads(301...400))
        let got6 = try await r.take(300)
        XCTAssertEqual(got6.map(\.sequence), Array(101...400), "resumed at 101 under the same epoch")
        await reader.close()
        await producer.close()
    }

    func testChannelRecreatedOnAGivesReset() async throws {
        var a = try daemon(Self.exporter)
        let b = try daemon(Self.importer)
        var producer = try await CometClient.connect(to: a.socketPath)
        var feed = try await producer.create("feed")
        try await feed.push(batch: payloads(1...10))
        try await waitExported(producer, 10)
        let reader = try await CometClient.connect(to: b.socketPath)
        let external = Reader(try await reader.subscribeExternal(address: "\(nats.url)/comet.feed", channel: "feed", history: 10))
        let imported = Reader(try await reader.subscribe("remote.feed", from: .oldest, wait: true))
        let got7 = try await external.take(10)
        XCTAssertEqual(got7.count, 10)
        let got8 = try await imported.take(10)
        XCTAssertEqual(got8.count, 10)
        let oldEpoch = feed.epoch

        // A crashes (no close marker) and its producer re-creates the channel.
        kill(a.process.processIdentifier, SIGKILL)
        a.process.waitUntilExit()
        await producer.close()
        a = try daemon(Self.exporter)
        producer = try await CometClient.connect(to: a.socketPath)
        feed = try await producer.create("feed")
        XCTAssertNotEqual(feed.epoch, oldEpoch)
        try await feed.push(batch: payloads(1...3))
        for r in [external, imported] {
            let end = await r.end()
            XCTAssertEqual((end as? EpochChanged)?.epoch, feed.epoch, "RESET with the new epoch, got \(String(describing: end))")
        }
        // The import follows the new epoch.
        let again = try await reader.subscribe("remote.feed", from: .oldest)
        XCTAssertEqual(again.info.epoch, feed.epoch)
        let got9 = try await Reader(again).take(3)
        XCTAssertEqual(got9.map(\.string), ["m1", "m2", "m3"])
        await reader.close()
        await producer.close()
    }

    // MARK: NATS unreachable

    func testUnreachableNATSIsAClearRefusalAndNoRetryStorm() async throws {
        let closed = try NATSServerProcess.freePort()
        let b = try daemon("")
        let reader = try await CometClient.connect(to: b.socketPath)
        let started = Date()
        do {
            _ = try await reader.subscribeExternal(address: "nats://127.0.0.1:\(closed)/comet.feed", channel: "feed")
            XCTFail("subscribed to nothing")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .upstreamUnreachable)
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        // No stream for the subject: NO_SUCH_CHANNEL.
        do {
            _ = try await reader.subscribeExternal(address: "\(nats.url)/comet.nothing", channel: "nothing")
            XCTFail("subscribed to nothing")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .noSuchChannel)
        }
        await reader.close()

        // An exporter whose server is down at its start works locally, says so once, and
        // catches up when the server comes.
        let late = try NATSServerProcess(port: closed)
        let a = try daemon(Self.exporter, url: late.url)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed")
        try await feed.push(batch: payloads(1...20))
        let local = try await producer.subscribe("feed", from: .oldest)
        let got10 = try await Reader(local).take(20)
        XCTAssertEqual(got10.count, 20, "the local channel works without NATS")
        try await Task.sleep(nanoseconds: 3_000_000_000)
        XCTAssertEqual(a.log.components(separatedBy: "NATS is not reachable").count - 1, 1, "said once:\n\(a.log)")
        let got11 = try await producer.stats()
        XCTAssertEqual(got11.exports.first?.connected, false)
        // An importer whose server is down: its name reads as a channel that does not exist yet.
        let b2 = try daemon(Self.importer, url: late.url)
        let remote = try await CometClient.connect(to: b2.socketPath)
        let refusedAt = Date()
        do {
            _ = try await remote.subscribe("remote.feed")
            XCTFail("subscribed while NATS is down")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .noSuchChannel)
        }
        XCTAssertLessThan(Date().timeIntervalSince(refusedAt), 2, "answered at once, not parked")
        let sub = try await remote.subscribe("remote.feed", wait: true)
        XCTAssertTrue(sub.info.waiting)
        try late.start()
        let got12 = try await Reader(sub).take(20, within: 60)
        XCTAssertEqual(got12.map(\.sequence), Array(1...20), "buffered, then exported")
        await remote.close()
        await producer.close()
    }

    /// The daemon logs in to a configured server with its own credentials: other users need a
    /// relay rule. Any other server is reached anonymously, as the user could itself.
    func testConfiguredServerNeedsARelayRuleForOtherUsers() async throws {
        let a = try daemon(Self.exporter)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed")
        try await feed.push(batch: payloads(1...3))
        try await waitExported(producer, 3)
        let b = try daemon(Self.importer)
        let denied = try Hostile.run(b, "relay", ["\(nats.url)/comet.feed"])["result"] as? String
        XCTAssertEqual(denied, "PERMISSION_DENIED")
        let anonymous = try Hostile.run(b, "relay", ["nats://localhost:\(nats.port)/comet.feed"])["result"] as? String
        XCTAssertEqual(anonymous, "OK", "not a configured server: no credentials, no rule needed")
        let policy = try Daemon.temporaryDirectory().appendingPathComponent("policy.conf")
        try "relay \(nats.url)/comet.* user:\(Hostile.uid)\n".write(to: policy, atomically: true, encoding: .utf8)
        let config = try Daemon.temporaryDirectory().appendingPathComponent("cometd.conf")
        try Self.importer.replacingOccurrences(of: "SERVER", with: nats.url).write(to: config, atomically: true, encoding: .utf8)
        let ruled = try Daemon(arguments: ["--config", config.path, "--policy", policy.path])
        daemons.append(ruled)
        let granted = try Hostile.run(ruled, "relay", ["\(nats.url)/comet.feed"])["result"] as? String
        XCTAssertEqual(granted, "OK")
        await producer.close()
    }

    func testConfigurationMistakesAreRefusedWithFileAndLine() throws {
        let file = try Daemon.temporaryDirectory().appendingPathComponent("bad.conf")
        try "[nats hub]\nurl = nats://127.0.0.1:4222\n[export feed*]\nstorage = disk\n".write(to: file, atomically: true, encoding: .utf8)
        let result = try runTool("cometd", ["--socket", file.deletingLastPathComponent().appendingPathComponent("s.sock").path, "--config", file.path])
        XCTAssertEqual(result.status, 78)
        XCTAssertTrue(result.stderr.contains("bad.conf:4: storage is memory or file"), result.stderr)
    }
}
