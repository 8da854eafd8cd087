import CComet
import Comet
import CometSupervision
import Foundation
import NIOCore
import XCTest

/// The Swift client's automatic reconnect across a crash of the daemon.
final class ReconnectTests: XCTestCase {
    func testReadersAndProducersCarryOnAcrossKillNine() async throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        let policy = ReconnectPolicy(initialDelay: .milliseconds(10), maxDelay: .milliseconds(200), giveUpAfter: .seconds(30))
        let producerClient = try await CometClient.connect(to: supervisor.socketPath, reconnect: policy)
        let readerClient = try await CometClient.connect(to: supervisor.socketPath, reconnect: policy)
        let total = 4000
        let producer = try await producerClient.create("live", size: 10_000)
        let subscription = try await readerClient.subscribe("live", from: .oldest)
        let inbox = try await producerClient.createPrivate("inbox", for: readerClient.session.id, size: 100)
        let privateSubscription = try await readerClient.subscribePrivate("inbox")
        let reading = readInOrder(subscription, total: total)
        let privateReading = Task { () -> [String] in
            var got: [String] = []
            do {
                for try await message in privateSubscription {
                    got.append(message.string)
                    if got.count == 6 { break }
                }
            } catch { got.append("error: \(error)") }
            return got
        }
        for i in 1...5 { _ = try await inbox.push("p\(i)") }
        var crashed = false
        var i = 1
        while i <= total {
            if i == total / 2, !crashed {
                crashed = true
                supervisor.stop(SIGKILL)
                try supervisor.start()
            }
            // A push in flight when the daemon died is sent again once it is back: no error.
            let sequence = try await producer.push("m\(i)")
            XCTAssertEqual(sequence, UInt64(i))
            i += 1
        }
        _ = try await inbox.push("p6")
        let read = await reading.value
        XCTAssertNil(read.error, supervisor.log)
        XCTAssertEqual(read.received, UInt64(total))
        XCTAssertTrue(read.inOrder)
        let privately = await privateReading.value
        XCTAssertEqual(privately, ["p1", "p2", "p3", "p4", "p5", "p6"], "unacknowledged ones come again and are dropped; nothing is lost")
        XCTAssertTrue(supervisor.log.contains("recovered after a crash"))
        await readerClient.close()
        await producerClient.close()
        supervisor.stop(SIGTERM)
    }
}

extension ReconnectTests {
    /// An unlimited channel (pulled) goes on after kill -9: every element of its source once.
    func testUnlimitedChannelCarriesOnAcrossKillNine() async throws {
        try await unlimitedChannelAcrossKillNine(producerDelay: .milliseconds(10))
    }

    /// The reader is back (and acknowledges) before the producer takes its channel back: the pull
    /// that comes due then is asked of the producer once it has adopted the channel.
    func testUnlimitedChannelWhoseReaderIsBackFirstCarriesOn() async throws {
        try await unlimitedChannelAcrossKillNine(producerDelay: .milliseconds(1500))
    }

    /// A pull outstanding at a kill -9 is forgotten: the restarted daemon asks a new one of the
    /// producer that takes the channel back, while the producer still works on the old one. Its
    /// answer to the old one is refused; the element goes with the new pull: every element once.
    func testUnlimitedChannelsOutstandingPullAcrossKillNine() async throws {
        try await unlimitedChannelWithAPullOutstanding(across: SIGKILL)
    }

    /// A planned restart (SIGTERM through the store) carries the connections and the outstanding
    /// pull: the producer answers it after the restart.
    func testUnlimitedChannelsOutstandingPullAcrossAPlannedRestart() async throws {
        try await unlimitedChannelWithAPullOutstanding(across: SIGTERM)
    }

    /// Waits (30 s at most) for `reading` to end with u1…u6.
    private func expectSixElements(_ reading: Task<[String], Error>, _ what: String, _ supervisor: Supervisor) async {
        do {
            let got = try await within(30, what) {
                try await withTaskCancellationHandler { try await reading.value } onCancel: { reading.cancel() }
            }
            XCTAssertEqual(got, ["u1", "u2", "u3", "u4", "u5", "u6"], supervisor.log)
        } catch {
            XCTFail("\(error)\n\(supervisor.log)")
        }
    }

    private func unlimitedChannelWithAPullOutstanding(across signal: Int32) async throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        let policy = ReconnectPolicy(initialDelay: .milliseconds(10), maxDelay: .milliseconds(200), giveUpAfter: .seconds(30))
        let producerClient = try await CometClient.connect(to: supervisor.socketPath, reconnect: policy)
        let readerClient = try await CometClient.connect(to: supervisor.socketPath, reconnect: policy)
        let (source, feed) = AsyncStream<[UInt8]>.makeStream()
        for i in 1...3 { feed.yield(Array("u\(i)".utf8)) }
        _ = try await producerClient.createUnlimited("pulled", for: readerClient.session.id, from: source)
        let subscription = try await readerClient.subscribePrivate("pulled")
        let reading = Task {
            var got: [String] = []
            for try await message in subscription { got.append(message.string) }
            return got
        }
        // u3 read and acknowledged (the fourth `next`), pull 4 outstanding: the source has nothing yet.
        try await Task.sleep(for: .milliseconds(500))
        supervisor.stop(signal)
        try supervisor.start()
        try await Task.sleep(for: .milliseconds(1000))
        for i in 4...6 { feed.yield(Array("u\(i)".utf8)) }
        feed.finish()
        await expectSixElements(reading, "reading across the restart", supervisor)
        await readerClient.close()
        await producerClient.close()
        supervisor.stop(SIGTERM)
    }

    private func unlimitedChannelAcrossKillNine(producerDelay: TimeAmount) async throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        let policy = ReconnectPolicy(initialDelay: .milliseconds(10), maxDelay: .milliseconds(200), giveUpAfter: .seconds(30))
        let producerPolicy = ReconnectPolicy(initialDelay: producerDelay, maxDelay: producerDelay, giveUpAfter: .seconds(30))
        let producerClient = try await CometClient.connect(to: supervisor.socketPath, reconnect: producerPolicy)
        let readerClient = try await CometClient.connect(to: supervisor.socketPath, reconnect: policy)
        let source = AsyncStream<[UInt8]> { continuation in
            for i in 1...6 { continuation.yield(Array("u\(i)".utf8)) }
        }
        _ = try await producerClient.createUnlimited("pulled", for: readerClient.session.id, from: source)
        let subscription = try await readerClient.subscribePrivate("pulled")
        let reading = Task {
            var iterator = subscription.makeAsyncIterator()
            var got: [String] = []
            for _ in 1...3 { got.append(try await iterator.next()?.string ?? "end") }
            supervisor.stop(SIGKILL)
            try supervisor.start()
            for _ in 1...3 { got.append(try await iterator.next()?.string ?? "end") }
            return got
        }
        await expectSixElements(reading, "reading across the kill -9", supervisor)
        await readerClient.close()
        await producerClient.close()
        supervisor.stop(SIGTERM)
    }
}

/// `comet push` and `comet listen` reconnect by default: a crash of the daemon in the middle of
/// a stream costs a pause, not a message.
final class CLIReconnectTests: XCTestCase {
    /// A `comet` process started with `arguments`, its standard input, output and error in pipes.
    private struct Started {
        let process = Process()
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        var said: String { String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
    }

    private func startComet(_ arguments: [String]) throws -> Started {
        let started = Started()
        started.process.executableURL = Daemon.executable("comet")
        started.process.arguments = arguments
        started.process.standardInput = started.input
        started.process.standardOutput = started.output
        started.process.standardError = started.errors
        try started.process.run()
        return started
    }

    func testPushAndListenCarryOnAcrossKillNine() throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        let total = 3000
        let listen = try startComet(["listen", "stream", "--wait", "--count", "\(total)", "--socket", supervisor.socketPath])
        usleep(300_000)
        let push = try startComet(["push", "stream", "--size", "5000", "--socket", supervisor.socketPath])
        func lines(_ range: ClosedRange<Int>) -> Data { Data(range.map { "line \($0)\n" }.joined().utf8) }
        push.input.fileHandleForWriting.write(lines(1...(total / 2)))
        usleep(500_000)
        supervisor.stop(SIGKILL)
        try supervisor.start()
        push.input.fileHandleForWriting.write(lines((total / 2 + 1)...total))
        try push.input.fileHandleForWriting.close()
        let output = listen.output.fileHandleForReading.readDataToEndOfFile()
        listen.process.waitUntilExit()
        push.process.waitUntilExit()
        let got = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
        XCTAssertEqual(listen.process.terminationStatus, 0, listen.said)
        XCTAssertEqual(push.process.terminationStatus, 0, push.said)
        XCTAssertEqual(got, (1...total).map { "line \($0)" })
        supervisor.stop(SIGTERM)
    }

    /// The systemd fault test's case, by hand: `comet push` pushes every line and exits (its
    /// channel closes) while two `comet listen` (mapped, and --no-mapped) are stopped far behind;
    /// then a kill -9. Once they go on, each still prints every line once, in order.
    func testListenersBehindAChannelClosedBeforeKillNineGetEveryLine() throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        let total = 3000
        // About 660 KB: more than a reader's socket takes, so the daemon has a backlog for it.
        let pad = String(repeating: "p", count: 200)
        let expected = (1...total).map { "line \($0) \(pad)" }
        let listeners = try [[], ["--no-mapped"]].map { extra in
            try startComet(["listen", "closing", "--wait", "--count", "\(total)", "--socket", supervisor.socketPath] + extra)
        }
        usleep(300_000)
        for listen in listeners { kill(listen.process.processIdentifier, SIGSTOP) }
        let push = try startComet(["push", "closing", "--size", "5000", "--socket", supervisor.socketPath])
        push.input.fileHandleForWriting.write(Data(expected.map { $0 + "\n" }.joined().utf8))
        try push.input.fileHandleForWriting.close()
        push.process.waitUntilExit()
        XCTAssertEqual(push.process.terminationStatus, 0, push.said)
        supervisor.stop(SIGKILL)
        try supervisor.start()
        for listen in listeners { kill(listen.process.processIdentifier, SIGCONT) }
        // One after the other: the second waits on its full pipe meanwhile, which costs it nothing.
        for (index, listen) in listeners.enumerated() {
            let output = listen.output.fileHandleForReading.readDataToEndOfFile()
            listen.process.waitUntilExit()
            let got = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
            let said = listen.said
            XCTAssertEqual(listen.process.terminationStatus, 0, "reader \(index): \(said)")
            XCTAssertEqual(got.count, total, "reader \(index): \(said)")
            XCTAssertTrue(got == expected, "reader \(index): lines out of order or missing")
        }
        supervisor.stop(SIGTERM)
    }
}

/// libcomet's reconnect (comet_set_reconnect) across kill -9: a C reader gets every message once,
/// in order; a C producer takes its channel back and learns what landed (comet_last_sequence).
final class CReconnectTests: XCTestCase {
    final class Seen {
        var sequences: [UInt64] = []
        var ended = false
    }

    func testCClientsCarryOnAcrossKillNine() throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        var producer: OpaquePointer?
        var reader: OpaquePointer?
        XCTAssertEqual(comet_connect(&producer, supervisor.socketPath), 0)
        XCTAssertEqual(comet_connect(&reader, supervisor.socketPath), 0)
        defer {
            _ = comet_unref(producer)
            _ = comet_unref(reader)
        }
        XCTAssertEqual(comet_set_reconnect(producer, 1), 0)
        XCTAssertEqual(comet_set_reconnect(reader, 1), 0)
        var channel: UInt64 = 0
        XCTAssertEqual(comet_create(producer, "c.crash", 5000, &channel), 0)
        let seen = Seen()
        let onMessage: comet_message_handler = { _, _, sequence, _, _, userdata in
            Unmanaged<Seen>.fromOpaque(userdata!).takeUnretainedValue().sequences.append(sequence)
            return 0
        }
        let onEnd: comet_end_handler = { _, _, _, _, userdata in
            Unmanaged<Seen>.fromOpaque(userdata!).takeUnretainedValue().ended = true
        }
        var subscription: UInt32 = 0
        XCTAssertEqual(
            comet_subscribe(reader, "c.crash", COMET_FROM_OLDEST, 0, 0, 0, onMessage, onEnd, Unmanaged.passUnretained(seen).toOpaque(), &subscription), 0)
        let total: UInt64 = 2000
        var next: UInt64 = 1
        var crashed = false
        while next <= total {
            if next == total / 2, !crashed {
                crashed = true
                supervisor.stop(SIGKILL)
                try supervisor.start()
            }
            let text = Array("c\(next)".utf8)
            var sequence: UInt64 = 0
            let r = text.withUnsafeBytes { comet_push_sync(producer, channel, $0.baseAddress, $0.count, &sequence) }
            if r == 0 {
                XCTAssertEqual(sequence, next)
                next += 1
            } else {
                // The connection was lost with this push in flight: the channel says whether it landed.
                var last: UInt64 = 0
                XCTAssertEqual(comet_last_sequence(producer, channel, &last), 0, "after \(r)")
                next = last + 1
            }
            _ = comet_process(reader)
        }
        let deadline = Date().addingTimeInterval(20)
        while seen.sequences.count < Int(total), !seen.ended, Date() < deadline {
            _ = comet_wait(reader, 50_000)
            _ = comet_process(reader)
        }
        XCTAssertFalse(seen.ended, supervisor.log)
        XCTAssertEqual(seen.sequences, Array(1...total))
        supervisor.stop(SIGTERM)
    }
}
