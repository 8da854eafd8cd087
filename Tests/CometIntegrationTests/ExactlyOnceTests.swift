import Comet
import CometSupervision
import Foundation
import XCTest

/// Producers push each message once across kill -9 at chosen points of a batch (the test
/// supervisor standing in for systemd): before the daemon reads the batch, when part of it is
/// in the ring file (mid-batch), and when it is applied but not answered. The client sends again
/// every push without an answer, with its producer numbers; the daemon skips what it has.
final class ExactlyOnceTests: XCTestCase {
    enum Fault: String {
        /// The daemon is stopped (SIGSTOP) while the batch is sent, then killed: it never read it.
        case beforeRead
        /// Killed once message 15, the fifth of the batch 11...30, is in its ring file.
        case midBatch
        /// Killed once the batch holding message 25 is applied and stored, before its answer.
        case beforeAnswer
    }

    func testBeforeTheBatchIsRead() async throws { try await crash(.beforeRead) }
    func testMidBatch() async throws { try await crash(.midBatch) }
    func testAfterApplyingBeforeAnswering() async throws { try await crash(.beforeAnswer) }

    private func crash(_ fault: Fault) async throws {
        let supervisor = try fault.armedDaemon()
        let policy = ReconnectPolicy(initialDelay: .milliseconds(10), maxDelay: .milliseconds(100), giveUpAfter: .seconds(30))
        let producerClient = try await CometClient.connect(to: supervisor.socketPath, reconnect: policy)
        let readerClient = try await CometClient.connect(to: supervisor.socketPath, reconnect: policy)
        let producer = try await producerClient.create("once", size: 1000)
        let subscription = try await readerClient.subscribe("once", from: .oldest)
        let reading = collect(subscription, count: 40)
        let expected = (1...40).map { "\($0)=m\($0)" }
        let firstTen = try await producer.push(batch: (1...10).map { Array("m\($0)".utf8) })
        XCTAssertEqual(firstTen, 1...10)

        fault.beforeBatch(supervisor)
        // One PUSH_NUMBERED of 20 messages (published together, coalesced), flushed meanwhile.
        for i in 11...30 { await producer.publish(Array("m\(i)".utf8)) }
        let flushed = Task { try await producer.flush() }
        try fault.strike(supervisor)
        let last = try await flushed.value
        XCTAssertEqual(last, 30, "the batch's answer after the resend names its last sequence number")
        let lastTen = try await producer.push(batch: (31...40).map { Array("m\($0)".utf8) })
        XCTAssertEqual(lastTen, 31...40)

        let got = await value(of: reading, closing: readerClient)
        XCTAssertEqual(got, expected, "every message once, in order (\(fault)):\n\(supervisor.log)")
        XCTAssertTrue(supervisor.log.contains("recovered after a crash"), supervisor.log)
        await readerClient.close()
        await producerClient.close()
        supervisor.stop(SIGTERM)
    }

    /// A refused numbered push leaves no gap behind: the next push takes the refused one's number
    /// (the ledger's own tests show the pushes sent behind it settled with it).
    func testARefusedPushLeavesNoGap() async throws {
        let daemon = try Daemon(arguments: ["--limit", "buffered-bytes=2048"])
        defer { daemon.stop() }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let producer = try await client.create("quota", size: 1000)
        let one = try await producer.push(String(repeating: "a", count: 500))
        XCTAssertEqual(one, 1)
        // 3000 bytes do not fit.
        await producer.publish(Array(repeating: UInt8(98), count: 3000))
        var refused: Error?
        do { try await producer.flush() } catch { refused = error }
        XCTAssertEqual((refused as? CometError)?.code, .quotaExceeded)
        let next = try await producer.push("c")
        XCTAssertEqual(next, 2, "numbering goes on from the refused push")
        let after = try await producer.push(batch: [Array("d".utf8), Array("e".utf8)])
        XCTAssertEqual(after, 3...4)
        await client.close()
    }
}

import CComet

/// What `reading` read, or, when a message never comes, what it had after 20 s (the reader's
/// client is closed, which ends its subscription): a lost message fails the test, not hangs it.
func value(of reading: Task<[String], Never>, closing client: CometClient) async -> [String] {
    let watchdog = Task {
        try await Task.sleep(for: .seconds(20))
        await client.close()
    }
    defer { watchdog.cancel() }
    return await reading.value
}

/// Reads `count` messages of `subscription` as "SEQUENCE=TEXT" (then an "error: …" if it ended).
func collect(_ subscription: CometSubscription, count: Int) -> Task<[String], Never> {
    Task {
        var got: [String] = []
        do {
            for try await message in subscription {
                got.append("\(message.sequence)=\(message.string)")
                if got.count == count { break }
            }
        } catch { got.append("error: \(error)") }
        return got
    }
}

extension ExactlyOnceTests.Fault {
    /// A daemon under the test supervisor, started with this fault's crash point.
    func armedDaemon() throws -> Supervisor {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        switch self {
        case .beforeRead: try supervisor.start()
        case .midBatch: try supervisor.start(extraArguments: ["--crash-at", "stored:15"])
        case .beforeAnswer: try supervisor.start(extraArguments: ["--crash-at", "applied:25"])
        }
        return supervisor
    }

    /// Before the batch 11...30 is sent: the daemon stops reading, for `beforeRead`.
    func beforeBatch(_ supervisor: Supervisor) {
        if self == .beforeRead { kill(supervisor.pid, SIGSTOP) }
    }

    /// Once the batch is sent: kills the stopped daemon, or waits for its crash point to; then
    /// starts it again through the store.
    func strike(_ supervisor: Supervisor) throws {
        if self == .beforeRead {
            usleep(300_000)
            supervisor.stop(SIGKILL)
        } else {
            XCTAssertNotNil(supervisor.waitForExit(timeout: 10), "the crash point was not reached:\n\(supervisor.log)")
        }
        try supervisor.start()
    }
}

/// libcomet with reconnection on, at the same crash points: coalesced comet_push() batches and
/// comet_push_async() land once, and each async handler hears the sequence its message got.
final class CExactlyOnceTests: XCTestCase {
    final class Seen {
        /// Sequence numbers the async handlers heard.
        var answered: Set<UInt64> = []
        var failures: [String] = []
    }

    func testBeforeTheBatchIsRead() async throws { try await crash(.beforeRead) }
    func testMidBatch() async throws { try await crash(.midBatch) }
    func testAfterApplyingBeforeAnswering() async throws { try await crash(.beforeAnswer) }

    private func crash(_ fault: ExactlyOnceTests.Fault) async throws {
        let supervisor = try fault.armedDaemon()
        let policy = ReconnectPolicy(initialDelay: .milliseconds(10), maxDelay: .milliseconds(100), giveUpAfter: .seconds(30))
        let readerClient = try await CometClient.connect(to: supervisor.socketPath, reconnect: policy)
        var producer: OpaquePointer?
        XCTAssertEqual(comet_connect(&producer, supervisor.socketPath), 0)
        defer { _ = comet_unref(producer) }
        XCTAssertEqual(comet_set_reconnect(producer, 1), 0)
        let seen = Seen()
        let context = Unmanaged.passUnretained(seen).toOpaque()
        let onError: comet_error_handler = { _, _, error, userdata in
            Unmanaged<Seen>.fromOpaque(userdata!).takeUnretainedValue().failures.append(String(cString: comet_strerror(error)))
        }
        comet_set_error_handler(producer, onError, context)
        var channel: UInt64 = 0
        XCTAssertEqual(comet_create(producer, "c.once", 1000, &channel), 0)
        let subscription = try await readerClient.subscribe("c.once", from: .oldest)
        let reading = collect(subscription, count: 31)
        let onDone: comet_done_handler = { _, result, value, userdata in
            let seen = Unmanaged<Seen>.fromOpaque(userdata!).takeUnretainedValue()
            if result < 0 { seen.failures.append(String(cString: comet_strerror(result))) } else { seen.answered.insert(value) }
        }
        func pushAsync(_ i: Int) {
            let text = Array("c\(i)".utf8)
            XCTAssertEqual(text.withUnsafeBytes { comet_push_async(producer, channel, $0.baseAddress, $0.count, onDone, context) }, 0)
        }
        func process(until done: @escaping () -> Bool) {
            let deadline = Date().addingTimeInterval(20)
            while !done(), Date() < deadline {
                _ = comet_flush(producer)
                _ = comet_wait(producer, 20_000)
                _ = comet_process(producer)
            }
        }
        for i in 1...10 { pushAsync(i) }
        process { seen.answered.count == 10 }

        fault.beforeBatch(supervisor)
        // Messages 11...30 coalesced into one numbered batch, then one async push.
        for i in 11...30 {
            let text = Array("c\(i)".utf8)
            XCTAssertEqual(text.withUnsafeBytes { comet_push(producer, channel, $0.baseAddress, $0.count) }, 0)
        }
        pushAsync(31)
        _ = comet_flush(producer)
        try fault.strike(supervisor)
        process { seen.answered.contains(31) || !seen.failures.isEmpty }
        XCTAssertEqual(seen.failures, [], supervisor.log)
        XCTAssertEqual(seen.answered, Set(1...10).union([31]), "each async handler hears, once, the sequence its message got")
        let got = await value(of: reading, closing: readerClient)
        XCTAssertEqual(got, (1...31).map { "\($0)=c\($0)" }, "every message once, in order (\(fault)):\n\(supervisor.log)")
        await readerClient.close()
        supervisor.stop(SIGTERM)
    }
}
