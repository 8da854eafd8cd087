import Comet
import Foundation
import XCTest

/// Faults on one NATS server (FederationTests' server and hosts): a stalled import, a killed
/// bridge, daemons restarted or re-created. The cluster's faults are FederationClusterTests'.
extension FederationTests {
    // MARK: A stalled import is never silent

    /// NATS goes and does not come back: B's readers that have everything are told (FAILED
    /// UPSTREAM_UNREACHABLE) after `stall-after`, and `comet listen` waits through it; when NATS
    /// is back, they go on from where they were.
    func testAStalledImportTellsReadersAndListenResumes() async throws {
        let a = try host(Self.exporter.replacingOccurrences(of: "storage = memory", with: "storage = file"))
        let b = try host(Self.importer)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 10_000)
        try await feed.push(batch: payloads(1...100))
        let reader = try await CometClient.connect(to: b.socketPath)
        let r = Reader(try await reader.subscribe("remote.feed", from: .oldest, wait: true))
        let got = try await r.take(100)
        XCTAssertEqual(got.count, 100)
        // A `comet listen` that must see 150 messages: it waits through the stall.
        let listen = Process()
        listen.executableURL = Daemon.executable("comet")
        listen.arguments = ["listen", "-s", b.socketPath, "remote.feed", "--from", "oldest", "--count", "150", "--show-seq"]
        let out = Pipe()
        let err = Pipe()
        listen.standardOutput = out
        listen.standardError = err
        try listen.run()

        let stoppedAt = Date()
        nats.kill()
        let told = await r.end(within: 30)
        let error = try XCTUnwrap(told as? CometError, "got \(String(describing: told))")
        XCTAssertEqual(error.code, .upstreamUnreachable)
        XCTAssertTrue(error.message.contains("comet.feed"), error.message)
        XCTAssertLessThan(Date().timeIntervalSince(stoppedAt), 15, "told within the bound, not left waiting")
        var imports: [ImportCounters] = []
        for _ in 0..<100 {
            imports = try await reader.stats().imports
            if imports.first?.state == .stalled { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTAssertEqual(imports.first?.state, .stalled)

        try await feed.push(batch: payloads(101...150))  // buffered in A's ring meanwhile
        try nats.start()
        let more = try await Self.readResuming(reader, "remote.feed", from: 101, epoch: feed.epoch, count: 50)
        XCTAssertEqual(more.map(\.sequence), Array(101...150), "no gap, no duplicate after the stall")
        listen.waitUntilExit()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let notes = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(listen.terminationStatus, 0, notes)
        XCTAssertEqual(printed.split(separator: "\n").map { $0.split(separator: "\t")[0] }, (1...150).map { Substring("\($0)") })
        XCTAssertTrue(notes.contains("stalled"), notes)
        await reader.close()
        await producer.close()
    }

    /// B's bridge is killed: readers keep what B has, are told after cometd's grace, and a new
    /// bridge takes the import over where it was.
    func testBridgeKilledReadersAreToldThenResume() async throws {
        let a = try host(Self.exporter)
        let b = try host(Self.importer, daemonArguments: ["--import-grace", "1"])
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 10_000)
        try await feed.push(batch: payloads(1...100))
        let reader = try await CometClient.connect(to: b.socketPath)
        let r = Reader(try await reader.subscribe("remote.feed", from: .oldest, wait: true))
        _ = try await r.take(100)
        b.bridge.stop(hard: true)
        let told = await r.end(within: 20)
        XCTAssertEqual((told as? CometError)?.code, .upstreamUnreachable, "got \(String(describing: told))")
        XCTAssertTrue((told as? CometError)?.message.contains("nothing has fed") ?? false)
        try await feed.push(batch: payloads(101...200))
        try b.bridge.start()
        let more = try await Self.readResuming(reader, "remote.feed", from: 101, epoch: feed.epoch, count: 100)
        XCTAssertEqual(more.map(\.sequence), Array(101...200))
        await reader.close()
        await producer.close()
    }

    // MARK: Daemons restarted

    func testReadersOfARestartedImporterResumeWithoutGap() async throws {
        let a = try host(Self.exporter)
        let b = try host(Self.importer)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 10_000)
        try await feed.push(batch: payloads(1...100))
        var reader = try await CometClient.connect(to: b.socketPath)
        let sub = try await reader.subscribe("remote.feed", from: .oldest, wait: true)
        let first = try await Reader(sub).take(100)
        XCTAssertEqual(first.map(\.sequence), Array(1...100))
        let epoch = sub.info.epoch
        await reader.close()

        // B's cometd restarts (no store): its bridge connects again and declares the import anew.
        b.daemon.stop()
        try await feed.push(batch: payloads(101...300))  // while B is down
        try b.restartDaemon()
        reader = try await CometClient.connect(to: b.socketPath)
        let resumed = try await reader.subscribe("remote.feed", from: .from(101), epoch: epoch, wait: true)
        let r = Reader(resumed)
        try await feed.push(batch: payloads(301...400))
        let rest = try await r.take(300, within: 60)
        XCTAssertTrue(rest.map(\.sequence) == Array(101...400), "resumed at 101 under the same epoch: \(rest.first?.sequence ?? 0)…\(rest.last?.sequence ?? 0), \(rest.count)")
        await reader.close()
        await producer.close()
    }

    func testChannelRecreatedOnAGivesReset() async throws {
        let a = try host(Self.exporter)
        let b = try host(Self.importer)
        var producer = try await CometClient.connect(to: a.socketPath)
        var feed = try await producer.create("feed")
        try await feed.push(batch: payloads(1...10))
        try await waitExported(producer, 10)
        let reader = try await CometClient.connect(to: b.socketPath)
        let imported = Reader(try await reader.subscribe("remote.feed", from: .oldest, wait: true))
        let got = try await imported.take(10)
        XCTAssertEqual(got.count, 10)
        let oldEpoch = feed.epoch

        // A crashes (no close marker) and its producer re-creates the channel.
        kill(a.daemon.process.processIdentifier, SIGKILL)
        a.daemon.process.waitUntilExit()
        await producer.close()
        try a.restartDaemon()
        producer = try await CometClient.connect(to: a.socketPath)
        feed = try await producer.create("feed")
        XCTAssertNotEqual(feed.epoch, oldEpoch)
        try await feed.push(batch: payloads(1...3))
        let end = await imported.end(within: 60)
        XCTAssertEqual((end as? EpochChanged)?.epoch, feed.epoch, "RESET with the new epoch, got \(String(describing: end))")
        // The import follows the new epoch.
        let again = try await reader.subscribe("remote.feed", from: .oldest)
        XCTAssertEqual(again.info.epoch, feed.epoch)
        let fresh = try await Reader(again).take(3)
        XCTAssertEqual(fresh.map(\.string), ["m1", "m2", "m3"])
        await reader.close()
        await producer.close()
    }
}
