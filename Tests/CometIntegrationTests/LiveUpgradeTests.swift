import Comet
import CometWire
import Foundation
import NIOCore
import XCTest

/// SIGHUP: the binary on disk takes over in the same process with every connection, channel,
/// session and subscription (docs/RESTARTS.md, "Live upgrade").
final class LiveUpgradeTests: XCTestCase {
    /// The daemon's own copy of the binary, in its directory, so a test can replace it.
    func daemonWithOwnBinary() throws -> (Daemon, URL) {
        let directory = try Daemon.temporaryDirectory()
        let binary = directory.appendingPathComponent("cometd")
        try FileManager.default.copyItem(at: Daemon.releaseDaemon, to: binary)
        let daemon = try Daemon(executable: binary)
        return (daemon, directory)
    }

    /// Replaces the daemon's binary on disk (in `directory`) with the shell script `script`.
    func replaceBinary(in directory: URL, with script: String) throws {
        let binary = directory.appendingPathComponent("cometd")
        try FileManager.default.removeItem(at: binary)
        try script.write(to: binary, atomically: true, encoding: .utf8)
        chmod(binary.path, 0o755)
    }

    private static func takeOvers(_ daemon: Daemon) -> Int { daemon.log.components(separatedBy: "state taken over").count - 1 }

    func waitForTakeOvers(_ daemon: Daemon, _ count: Int, timeout: TimeInterval = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Self.takeOvers(daemon) < count, Date() < deadline { usleep(10_000) }
        XCTAssertEqual(Self.takeOvers(daemon), count, daemon.log)
    }

    /// 100 readers and a producer pushing throughout; three upgrades on the way. Every reader gets
    /// every message exactly once, in order, on the connection it started with; the PID stays.
    func testUpgradeUnderLoadLosesNothing() async throws {
        let (daemon, directory) = try daemonWithOwnBinary()
        defer {
            XCTAssertEqual(daemon.stop(), 0, daemon.log)
            try? FileManager.default.removeItem(at: directory)
        }
        let pid = daemon.process.processIdentifier
        let total = 30_000
        let producerClient = try await CometClient.connect(to: daemon.socketPath)
        let producer = try await producerClient.create("load", size: 1000)
        var readers: [CometClient] = []
        var tasks: [Task<OrderedReading, Never>] = []
        for _ in 0..<100 {
            let client = try await CometClient.connect(to: daemon.socketPath)
            readers.append(client)
            let subscription = try await client.subscribe("load", from: .oldest)
            tasks.append(readInOrder(subscription, total: total))
        }
        let upgrades = Task.detached { [daemon] in
            for round in 1...3 {
                usleep(150_000)
                kill(pid, SIGHUP)
                let deadline = Date().addingTimeInterval(20)
                while LiveUpgradeTests.takeOvers(daemon) < round, Date() < deadline { usleep(5_000) }
            }
        }
        for i in 1...total {
            await producer.publish(Array("message \(i)".utf8))
            if i % 500 == 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        let last = try await producer.flush()
        XCTAssertEqual(last, UInt64(total))
        await upgrades.value
        for task in tasks {
            let reading = await task.value
            XCTAssertNil(reading.error)
            XCTAssertEqual(reading.received, UInt64(total))
            XCTAssertTrue(reading.inOrder)
        }
        try waitForTakeOvers(daemon, 3)
        XCTAssertTrue(daemon.process.isRunning)
        XCTAssertEqual(daemon.process.processIdentifier, pid)
        // The producer's connection is the one it started with: it still owns its channel.
        let after = try await producer.push("after")
        XCTAssertEqual(after, UInt64(total) + 1)
        for reader in readers { await reader.close() }
        await producerClient.close()
    }

    /// Sessions, private channels with unacknowledged messages, waiting subscriptions and
    /// half-read requests are carried over.
    func testSessionsPrivateChannelsAndWaitsAreCarriedOver() async throws {
        let (daemon, directory) = try daemonWithOwnBinary()
        defer {
            XCTAssertEqual(daemon.stop(), 0, daemon.log)
            try? FileManager.default.removeItem(at: directory)
        }
        let reader = try await CometClient.connect(to: daemon.socketPath)
        let producerClient = try await CometClient.connect(to: daemon.socketPath)
        let inbox = try await producerClient.createPrivate("inbox", for: reader.session.id)
        _ = try await inbox.push("one")
        _ = try await inbox.push("two")
        let waiting = try await reader.subscribe("later", wait: true)
        // A request cut in the middle of its frame: the rest comes after the upgrade.
        let raw = try RawConnection(daemon.socketPath)
        _ = try raw.hello()
        var ping = ByteBuffer()
        ping.writeInteger(UInt32(5))
        ping.writeInteger(UInt8(Opcode.ping.rawValue))
        ping.writeInteger(UInt32(77))
        let bytes = Array(ping.readableBytesView)
        raw.send(Array(bytes.prefix(6)))
        usleep(100_000)

        kill(daemon.process.processIdentifier, SIGHUP)
        try waitForTakeOvers(daemon, 1)

        raw.send(Array(bytes.dropFirst(6)))
        XCTAssertNotNil(try raw.expectOK(77))
        let subscription = try await reader.subscribePrivate("inbox")
        var iterator = subscription.makeAsyncIterator()
        let first = try await iterator.next()
        XCTAssertEqual(first.map { String(decoding: $0.payload, as: UTF8.self) }, "one")
        subscription.acknowledge(through: 1)
        _ = try await inbox.push("three")
        let second = try await iterator.next()
        XCTAssertEqual(second.map { String(decoding: $0.payload, as: UTF8.self) }, "two")
        let third = try await iterator.next()
        XCTAssertEqual(third?.sequence, 3)
        let later = try await producerClient.create("later")
        _ = try await later.push("appeared")
        var waited = waiting.makeAsyncIterator()
        let appeared = try await waited.next()
        XCTAssertEqual(appeared.map { String(decoding: $0.payload, as: UTF8.self) }, "appeared")
        await reader.close()
        await producerClient.close()
    }

    /// A binary that cannot take over (here one that exits at once) is refused before anything
    /// happens: the old process goes on serving everyone, and says why.
    func testFailedUpgradeLeavesTheOldDaemonServing() async throws {
        let (daemon, directory) = try daemonWithOwnBinary()
        defer {
            XCTAssertEqual(daemon.stop(), 0, daemon.log)
            try? FileManager.default.removeItem(at: directory)
        }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let producer = try await client.create("steady")
        let subscription = try await client.subscribe("steady")
        let binary = directory.appendingPathComponent("cometd")
        try FileManager.default.removeItem(at: binary)
        try "#!/bin/sh\nexit 1\n".write(to: binary, atomically: true, encoding: .utf8)
        chmod(binary.path, 0o755)

        kill(daemon.process.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(20)
        while !daemon.log.contains("live upgrade refused"), Date() < deadline { usleep(10_000) }
        XCTAssertTrue(daemon.log.contains("live upgrade refused"), daemon.log)
        XCTAssertTrue(daemon.log.contains("--handover-probe failed"), daemon.log)
        XCTAssertEqual(Self.takeOvers(daemon), 0)

        _ = try await producer.push("still here")
        var iterator = subscription.makeAsyncIterator()
        let message = try await iterator.next()
        XCTAssertEqual(message.map { String(decoding: $0.payload, as: UTF8.self) }, "still here")
        let other = try await CometClient.connect(to: daemon.socketPath)
        try await other.ping()
        await other.close()
        await client.close()
    }
}

extension LiveUpgradeTests {
    /// A reader that does not read while the daemon is upgraded: what its socket had not taken
    /// (queued output, several hundred KiB) is handed over and comes first, then the rest.
    func testQueuedOutputOfASlowReaderIsHandedOver() async throws {
        let (daemon, directory) = try daemonWithOwnBinary()
        defer {
            XCTAssertEqual(daemon.stop(), 0, daemon.log)
            try? FileManager.default.removeItem(at: directory)
        }
        let total = 20_000
        let producerClient = try await CometClient.connect(to: daemon.socketPath)
        let producer = try await producerClient.create("backlog", size: total)
        let reader = try RawConnection(daemon.socketPath, receiveBuffer: 4096)
        _ = try reader.hello()
        _ = try reader.expectOK(reader.send(.subscribe(name: "backlog", position: .next, epoch: 0, wait: false)))
        let payload = String(repeating: "q", count: 100)
        for start in stride(from: 0, to: total, by: 500) {
            _ = try await producer.push(batch: (start..<(start + 500)).map { _ in Array(payload.utf8) })
        }
        usleep(200_000)
        kill(daemon.process.processIdentifier, SIGHUP)
        try waitForTakeOvers(daemon, 1)
        var next: UInt64 = 1
        while next <= UInt64(total), let frame = try reader.read() {
            if case .message(_, let sequence, _) = frame {
                XCTAssertEqual(sequence, next)
                if sequence != next { break }
                next += 1
            }
        }
        XCTAssertEqual(next, UInt64(total) + 1, "every message once, in order, across the upgrade")
        await producerClient.close()
    }

    /// A binary that reads older image formats only (a roll-back to 0.9.1, which reads 1...2) is
    /// handed the newest of them it reads: everything is carried over but what only format 3
    /// holds, so a mapped reader stays on the socket there instead of taking its ring back.
    func testAnOlderBinaryIsHandedTheFormatItReads() async throws {
        let (daemon, directory) = try daemonWithOwnBinary()
        defer {
            XCTAssertEqual(daemon.stop(), 0, daemon.log)
            try? FileManager.default.removeItem(at: directory)
        }
        try replaceBinary(in: directory, with: """
            #!/bin/sh
            case " $* " in *" --handover-probe "*) echo comet-handover-formats 1 2; exit 0;; esac
            exec '\(Daemon.releaseDaemon.path)' "$@"

            """)
        let producer = try await CometClient.connect(to: daemon.socketPath)
        let news = try await producer.create("news", size: 100_000)
        let reader = try await CometClient.connect(to: daemon.socketPath)
        let subscription = try await reader.subscribe("news")
        var iterator = subscription.makeAsyncIterator()
        try await pushNumbered(news, 1...100)
        var next: UInt64 = 1
        func take(through last: UInt64) async throws {
            while next <= last, let message = try await iterator.next() {
                XCTAssertEqual(message.sequence, next)
                next += 1
            }
        }
        try await take(through: 100)
        XCTAssertTrue(subscription.info.mapped)
        kill(daemon.process.processIdentifier, SIGHUP)
        try waitForTakeOvers(daemon, 1)
        XCTAssertTrue(daemon.log.contains("image-format=2"), daemon.log)
        for sequence in 101...150 {
            try await pushNumbered(news, sequence...sequence)
            try await take(through: UInt64(sequence))
            try await Task.sleep(for: .milliseconds(5))
        }
        XCTAssertFalse(subscription.info.mapped, "without format 3 the next process does not know it takes its ring back")
        try await producer.ping()
        await reader.close()
        await producer.close()
    }

    /// A binary that reads other image formats only is refused before anything happens.
    func testABinaryOfAnotherImageFormatIsRefused() async throws {
        let (daemon, directory) = try daemonWithOwnBinary()
        defer {
            XCTAssertEqual(daemon.stop(), 0, daemon.log)
            try? FileManager.default.removeItem(at: directory)
        }
        try replaceBinary(in: directory, with: "#!/bin/sh\necho comet-handover-formats 9 9\n")
        let client = try await CometClient.connect(to: daemon.socketPath)
        kill(daemon.process.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(20)
        while !daemon.log.contains("live upgrade refused"), Date() < deadline { usleep(10_000) }
        XCTAssertTrue(daemon.log.contains("reads image formats 9...9, none of 1...3"), daemon.log)
        try await client.ping()
        await client.close()
    }
}
