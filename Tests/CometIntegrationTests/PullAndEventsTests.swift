import Comet
import CometWire
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import XCTest

/// Unlimited (pulled) channels, event emitters and wait_timeout over a real daemon.
final class PullAndEventsTests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws { daemon = try Daemon(arguments: ["--session-grace", "1"]) }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    func connect() async throws -> CometClient { try await CometClient.connect(to: daemon.socketPath) }

    /// A source that reports how often it was read and answers with the current value of `mail`.
    final class MailSource: AsyncSequence, @unchecked Sendable {
        typealias Element = [UInt8]
        let reads = NIOLockedValueBox(0)
        let mail = NIOLockedValueBox(0)

        struct AsyncIterator: AsyncIteratorProtocol {
            let source: MailSource
            mutating func next() async throws -> [UInt8]? {
                source.reads.withLockedValue { $0 += 1 }
                return Array("unread \(source.mail.withLockedValue { $0 })".utf8)
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: self) }
    }

    func testUnlimitedChannelReadsItsSourceOnlyOnPull() async throws {
        let consumer = try await connect()
        let producerClient = try await connect()
        let source = MailSource()
        source.mail.withLockedValue { $0 = 1 }
        _ = try await producerClient.createUnlimited("unread", for: consumer.session.id, from: source)
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertEqual(source.reads.withLockedValue { $0 }, 0, "nobody reads: the source is not touched")

        let subscription = try await consumer.subscribePrivate("unread")
        var iterator = subscription.makeAsyncIterator()
        let first = try await iterator.next()
        XCTAssertEqual(first?.string, "unread 1")
        source.mail.withLockedValue { $0 = 7 }
        let second = try await iterator.next()
        XCTAssertEqual(second?.string, "unread 7", "the value is taken at the moment of the request")
        XCTAssertEqual(second?.sequence, 2)
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertEqual(source.reads.withLockedValue { $0 }, 2, "no read-ahead while the reader holds its message")
        let third = try await iterator.next()
        XCTAssertEqual(third?.sequence, 3)
        let listed = try await consumer.channels().first { $0.name == "unread" }
        XCTAssertEqual(listed?.kind, .unlimited)
        await consumer.close()
        await producerClient.close()
    }

    func testPullProtocolErrors() async throws {
        let consumer = try await connect()
        let producer = try RawConnection(daemon.socketPath)
        _ = try producer.hello()
        var body = try producer.expectOK(producer.send(.createPrivate(name: "pulled", kind: .unlimited, size: 0, session: consumer.session.id)))
        let channel = try CreateReply(from: &body).channel
        XCTAssertEqual(try producer.expectError(producer.send(.answer(channel: channel, pull: 1, payload: ByteBuffer(string: "early")))), .pullNotRequested)
        XCTAssertEqual(try producer.expectError(producer.send(.push(channel: channel, payload: ByteBuffer(string: "push")))), .pullNotRequested)
        let subscription = try await consumer.subscribePrivate("pulled")
        // The subscription makes the daemon ask.
        var pull: UInt64?
        while pull == nil, let frame = try producer.read() {
            if case .pull(channel, let id) = frame { pull = id }
        }
        let id = try XCTUnwrap(pull)
        _ = try producer.expectOK(producer.send(.answer(channel: channel, pull: id, payload: ByteBuffer(string: "one"))))
        XCTAssertEqual(try producer.expectError(producer.send(.answer(channel: channel, pull: id, payload: ByteBuffer(string: "twice")))), .pullNotRequested)
        var iterator = subscription.makeAsyncIterator()
        let got = try await iterator.next()
        XCTAssertEqual(got?.string, "one")
        await consumer.close()
    }

    func testEmitterFromManyThreads() async throws {
        let p = try await connect()
        let emitter = try await p.createEmitter("events", size: 1000)
        let c = try await connect()
        let subscription = try await c.subscribe("events")
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for i in 0..<50 { try! emitter.emit("t\(thread)-\(i)") }
        }
        var got: [CometMessage] = []
        for try await m in subscription {
            got.append(m)
            if got.count == 200 { break }
        }
        XCTAssertEqual(got.map(\.sequence), Array(1...200))
        for thread in 0..<4 {
            let mine = got.map(\.string).filter { $0.hasPrefix("t\(thread)-") }
            XCTAssertEqual(mine, (0..<50).map { "t\(thread)-\($0)" }, "each thread's events in its order")
        }
        await c.close()
        await p.close()
    }

    func testEmitterBoundIsEnforced() async throws {
        let p = try await connect()
        let emitter = try await p.createEmitter("bounded", size: 5)
        kill(daemon.process.processIdentifier, SIGSTOP)
        defer { kill(daemon.process.processIdentifier, SIGCONT) }
        for i in 0..<5 { try emitter.emit("e\(i)") }
        XCTAssertThrowsError(try emitter.emit("e5")) { XCTAssertTrue($0 is EmitterFull) }
        kill(daemon.process.processIdentifier, SIGCONT)
        try await p.ping()
        XCTAssertEqual(emitter.inFlight, 0)
        try emitter.emit("after")
        await p.close()
    }

    func testWaitTimeoutFiresAfterInactivityAndNotBefore() async throws {
        let consumer = try await connect()
        let producerClient = try await connect()
        let c = try await producerClient.createPrivate("activity", for: consumer.session.id)
        let subscription = try await consumer.subscribePrivate("activity")
        let start = ContinuousClock.now
        let waiter = Task { try await producerClient.waitTimeout(session: consumer.session.id, inactivity: .milliseconds(400)) }
        // Activity at 250 ms pushes the deadline to at least 650 ms.
        try await Task.sleep(for: .milliseconds(250))
        try await c.push("still here")
        var iterator = subscription.makeAsyncIterator()
        _ = try await iterator.next()
        let outcome = try await waiter.value
        let elapsed = ContinuousClock.now - start
        XCTAssertEqual(outcome, .inactive)
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(640), "not before the inactivity period after the last activity")

        let ended = Task { try await producerClient.waitTimeout(session: consumer.session.id, inactivity: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(100))
        await consumer.close()
        let endOutcome = try await ended.value
        XCTAssertEqual(endOutcome, .ended, "the session ended after its 1 s grace period")
        do {
            _ = try await producerClient.waitTimeout(session: 0x1234, inactivity: .seconds(1))
            XCTFail()
        } catch let error as CometError {
            XCTAssertEqual(error.code, .noSuchSession)
        }
        await producerClient.close()
    }
}
