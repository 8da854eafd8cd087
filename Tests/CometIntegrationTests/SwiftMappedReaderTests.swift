import Comet
import CometSupervision
import CometWire
import Foundation
import NIOCore
import XCTest

/// The Swift client and `comet listen` read site channels from the ring, mapped (docs/PROTOCOL.md
/// §6.23), by default: the same messages, order and endings as from the socket.
final class SwiftMappedReaderTests: XCTestCase {
    /// Fails unless `sequences` is exactly 1…`count`, naming the first place it is not.
    func assertWhole(_ sequences: [UInt64], _ count: Int, _ context: String = "", line: UInt = #line) {
        let wrong = sequences.enumerated().first { $0.element != UInt64($0.offset + 1) }
        XCTAssertTrue(
            sequences.count == count && wrong == nil,
            "\(sequences.count) of \(count) messages; first out of place: \(wrong.map { "\($0.element) at \($0.offset)" } ?? "none") \(context)",
            line: line)
    }

    /// Reads `subscription` to its end: the sequence numbers, whether each payload matched, how
    /// it ended, and whether it was mapped while reading.
    static func readAll(
        _ subscription: CometSubscription, pauseEvery: Int = 0
    ) async -> (sequences: [UInt64], payloads: Bool, error: Error?, mapped: Bool, alwaysMapped: Bool) {
        var sequences: [UInt64] = []
        var payloads = true
        var mapped = false
        var always = true
        do {
            for try await message in subscription {
                sequences.append(message.sequence)
                payloads = payloads && message.payload == Array("m\(message.sequence)".utf8)
                mapped = mapped || subscription.info.mapped
                always = always && subscription.info.mapped
                if pauseEvery > 0, sequences.count % pauseEvery == 0 { try await Task.sleep(for: .milliseconds(1)) }
            }
            return (sequences, payloads, nil, mapped, always)
        } catch {
            return (sequences, payloads, error, mapped, always)
        }
    }

    /// 30,000 messages across ring growth, read mapped (the default) and from the socket
    /// (`mapped: false`) side by side: the same messages, in order; CLOSED ends both.
    func testTheSwiftClientReadsTheRingMappedByDefault() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let news = try await client.create("news", size: 100_000)
        let reader = try await CometClient.connect(to: daemon.socketPath)
        XCTAssertTrue(reader.server.servesMappedRings)
        let mapped = try await reader.subscribe("news")
        let socket = try await reader.subscribe("news", mapped: false)
        async let fromRing = Self.readAll(mapped)
        async let fromSocket = Self.readAll(socket)
        try await pushNumbered(news, 1...30000)
        try await news.close()
        let (ring, plain) = await (fromRing, fromSocket)
        XCTAssertNil(ring.error)
        XCTAssertNil(plain.error)
        assertWhole(ring.sequences, 30000)
        assertWhole(plain.sequences, 30000)
        XCTAssertTrue(ring.payloads && plain.payloads)
        XCTAssertTrue(ring.mapped, "read from the ring")
        XCTAssertFalse(plain.mapped, "mapped: false reads the socket")
        XCTAssertEqual(mapped.info.closedAfter, 30000)
        await reader.close()
        await client.close()
    }

    /// Mapped readers start where the daemon says: the last K, a sequence number, the oldest.
    func testMappedReadersStartWhereAsked() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let news = try await client.create("news", size: 200)
        try await pushNumbered(news, 1...100)
        let reader = try await CometClient.connect(to: daemon.socketPath)
        let lastFive = try await reader.subscribe("news", from: .last(5))
        let fromSeventy = try await reader.subscribe("news", from: .from(70))
        let oldest = try await reader.subscribe("news", from: .oldest)
        try await pushNumbered(news, 101...101)
        try await news.close()
        for (subscription, first) in [(lastFive, 96), (fromSeventy, 70), (oldest, 1)] {
            let result = await Self.readAll(subscription)
            XCTAssertNil(result.error)
            XCTAssertEqual(result.sequences, (UInt64(first)...101).map { $0 }, "from \(first)")
            XCTAssertTrue(result.mapped, "from \(first): read from the ring")
            XCTAssertTrue(result.payloads, "from \(first)")
        }
        await reader.close()
        await client.close()
    }

    /// A Swift reader of the producer's own user that reads slowly loses nothing: on a ring of
    /// 4096 messages it stays on the ring, the producer waiting for it as for any reader of its
    /// user (it says how far it read in its position page, with ACK when the page asks); on a
    /// 100-message ring it is detached at once and reads on from the socket.
    func testASlowSwiftReaderOfTheProducersUserLosesNothing() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        for (name, size, count) in [("ring", 4096, 30000), ("small", 100, 3000)] {
            let channel = try await client.create(name, size: size)
            let reader = try await CometClient.connect(to: daemon.socketPath)
            let subscription = try await reader.subscribe(name)
            async let read = Self.readAll(subscription, pauseEvery: size == 100 ? 10 : 500)
            try await pushNumbered(channel, 1...count, batch: 10)
            try await channel.close()
            let result = await read
            XCTAssertNil(result.error, "\(name): \(String(describing: result.error))")
            assertWhole(result.sequences, count, name)
            XCTAssertTrue(result.payloads)
            XCTAssertTrue(result.mapped, "\(name): it started on the ring")
            if size >= 4096 {
                XCTAssertTrue(result.alwaysMapped, "pauses far shorter than the reader grace keep it on a 4096-message ring")
            } else {
                XCTAssertFalse(result.alwaysMapped, "a 100-message ring is no buffer to wait on: detached at once")
            }
            await reader.close()
        }
        await client.close()
    }

    /// A Swift reader detached from its 100-message ring (it did not read while 2,000 went in)
    /// reads them from the socket, and once it has caught up the daemon gives it its ring back
    /// (SUBSCRIBE `RETURN`): `info.mapped` turns true again and the rest comes from the mapping,
    /// every message once, in order, CLOSED at the end.
    func testADetachedSwiftReaderGoesBackToItsRingOnceCaughtUp() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let channel = try await client.create("back", size: 100)
        let reader = try await CometClient.connect(to: daemon.socketPath)
        XCTAssertTrue(reader.server.returnsToRings)
        let subscription = try await reader.subscribe("back")
        try await pushNumbered(channel, 1...2000, batch: 100)
        var iterator = subscription.makeAsyncIterator()
        var sequences: [UInt64] = []
        var payloads = true
        var path: [Bool] = []
        func take(through last: UInt64) async throws {
            while sequences.last ?? 0 < last, let message = try await iterator.next() {
                sequences.append(message.sequence)
                payloads = payloads && message.payload == Array("m\(message.sequence)".utf8)
                if path.last != subscription.info.mapped { path.append(subscription.info.mapped) }
            }
        }
        try await take(through: 2000)
        XCTAssertEqual(path.last, false, "detached: the burst came from the socket")
        // Caught up: the next pushes find nothing waiting for its socket, and it goes back.
        var next = 2001
        while next <= 2300 {
            try await pushNumbered(channel, next...next)
            try await take(through: UInt64(next))
            if path.last == true, next >= 2100 { break }
            try await Task.sleep(for: .milliseconds(2))
            next += 1
        }
        XCTAssertEqual(path.last, true, "back on its ring after the burst (path \(path))")
        try await pushNumbered(channel, (next + 1)...(next + 500), batch: 10)
        try await channel.close()
        while let message = try await iterator.next() {
            sequences.append(message.sequence)
            payloads = payloads && message.payload == Array("m\(message.sequence)".utf8)
        }
        assertWhole(sequences, next + 500)
        XCTAssertTrue(payloads)
        XCTAssertEqual(subscription.info.closedAfter, UInt64(next + 500))
        await reader.close()
        await client.close()
    }

    /// A newest channel read from the ring skips to the latest value, as from the socket.
    func testASwiftReaderOfANewestChannelSkipsToTheLatestValue() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let latest = try await client.createNewest("latest")
        try await latest.push(Array("m1".utf8))
        let reader = try await CometClient.connect(to: daemon.socketPath)
        let subscription = try await reader.subscribe("latest", from: .oldest)
        var iterator = subscription.makeAsyncIterator()
        let first = try await iterator.next()
        XCTAssertEqual(first?.sequence, 1)
        XCTAssertTrue(subscription.info.mapped)
        for n in 2...500 { try await latest.push(Array("m\(n)".utf8)) }
        try await client.ping()
        var seen: [UInt64] = []
        while let message = try await iterator.next() {
            seen.append(message.sequence)
            XCTAssertEqual(message.payload, Array("m\(message.sequence)".utf8))
            if message.sequence == 500 { break }
        }
        XCTAssertEqual(seen.last, 500)
        XCTAssertEqual(seen, seen.sorted(), "in order, skipping what was replaced")
        await reader.close()
        await client.close()
    }

    /// `comet listen` as another user (never waited for): its output not read, it stops reading
    /// while the producer pushes 300,000 messages through a 100-message ring without waiting. It
    /// is detached from the ring before being overtaken and handed messages over the socket up to
    /// its queue (1 MiB), as a socket reader; read again, it prints what it had, in order, then
    /// FULL (status 2) at the oldest message the ring keeps, 299,901.
    func testAnOvertakenListenOfAnotherUserEndsFullAtTheRightSequence() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let comet = daemon.directory.appendingPathComponent("comet").path
        try FileManager.default.copyItem(atPath: Daemon.executable("comet").path, toPath: comet)
        chmod(daemon.directory.path, 0o755)
        let client = try await CometClient.connect(to: daemon.socketPath)
        let small = try await client.create("small", size: 100)
        let listen = Process()
        listen.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        listen.arguments = ["--reuid=\(Hostile.uid)", "--regid=\(Hostile.uid)", "--clear-groups", comet,
                            "listen", "small", "--show-seq", "--socket", daemon.socketPath]
        let out = Pipe()
        let err = Pipe()
        listen.standardOutput = out
        listen.standardError = err
        try listen.run()
        defer { if listen.isRunning { listen.terminate() } }
        for _ in 0..<250 {
            if try await client.channels().first(where: { $0.name == "small" })?.subscribers ?? 0 > 0 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        // Nobody reads its output: it blocks once the pipe is full, and so stops reading.
        let started = Date()
        try await pushNumbered(small, 1...300_000, batch: 1000)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "a reader of another user never holds the producer")
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        listen.waitUntilExit()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(listen.terminationStatus, 2, "FULL: \(errors)")
        XCTAssertTrue(errors.contains("oldest buffered is 299901"), errors)
        let sequences = printed.split(separator: "\n").compactMap { $0.split(separator: "\t").first.flatMap { UInt64($0) } }
        XCTAssertFalse(sequences.isEmpty)
        assertWhole(sequences, sequences.count, "(what it printed is whole and in order)")
        XCTAssertLessThan(sequences.count, 299_901)
        await client.close()
    }

    /// kill -9 under the test supervisor: the Swift reader reconnects by itself, subscribes again
    /// after its last message, mapped, and reads every message once, in order.
    func testASwiftMappedReaderGoesOnAfterKillNine() async throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        defer { _ = supervisor.stop(SIGTERM) }
        let producer = try await CometClient.connect(to: supervisor.socketPath, reconnect: .default)
        let news = try await producer.create("crashy", size: 100_000)
        let reader = try await CometClient.connect(to: supervisor.socketPath, reconnect: .default)
        let subscription = try await reader.subscribe("crashy")
        let read = Task { () -> [UInt64] in
            var sequences: [UInt64] = []
            for try await message in subscription {
                XCTAssertEqual(message.payload, Array("m\(message.sequence)".utf8))
                sequences.append(message.sequence)
                if sequences.count == 2000 { break }
            }
            return sequences
        }
        try await pushNumbered(news, 1...1000, batch: 100)
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertTrue(subscription.info.mapped)
        supervisor.stop(SIGKILL)
        try supervisor.start()
        var adopted = false
        for await event in producer.events {
            if case .adopted(_, let last) = event {
                XCTAssertEqual(last, 1000)
                adopted = true
                break
            }
        }
        XCTAssertTrue(adopted)
        try await pushNumbered(news, 1001...2000, batch: 100)
        let sequences = try await read.value
        assertWhole(sequences, 2000, supervisor.log)
        XCTAssertTrue(subscription.info.mapped, "mapped again after the crash")
        await reader.close()
        await producer.close()
    }

    /// A live upgrade: the new process serves the Swift reader's subscription over the socket
    /// from the first message it was not told of, then gives it its ring back once it caught up;
    /// nothing lost, nothing twice.
    func testALiveUpgradeCarriesASwiftMappedReader() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let news = try await client.create("news", size: 100_000)
        let reader = try await CometClient.connect(to: daemon.socketPath)
        let subscription = try await reader.subscribe("news")
        async let read = Self.readAll(subscription)
        try await pushNumbered(news, 1...3000)
        try await Task.sleep(for: .milliseconds(300))
        kill(daemon.process.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(20)
        while !daemon.log.contains("state taken over"), Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        try await pushNumbered(news, 3001...6000)
        // Served over the socket after the upgrade, then given its ring back once it caught up
        // (SUBSCRIBE RETURN, kept in the image): later pushes find it mapped again.
        var next = 6001
        while !subscription.info.mapped, next < 7000 {
            try await Task.sleep(for: .milliseconds(5))
            try await pushNumbered(news, next...next)
            next += 1
        }
        XCTAssertTrue(subscription.info.mapped, "back on its ring after the upgrade")
        try await pushNumbered(news, next...(next + 999))
        try await news.close()
        let result = await read
        XCTAssertNil(result.error)
        assertWhole(result.sequences, next + 999)
        XCTAssertTrue(result.payloads && result.mapped)
        await reader.close()
        await client.close()
    }
}
