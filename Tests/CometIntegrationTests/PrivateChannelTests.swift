import Comet
import NIOCore
import Foundation
import XCTest

/// Client-process scope over a real daemon: sessions, private channels, resume, isolation, full.
final class PrivateChannelIntegrationTests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws {
        daemon = try Daemon(arguments: ["--session-grace", "2"])
    }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    func connect(resuming: SessionCredentials? = nil) async throws -> CometClient {
        try await CometClient.connect(to: daemon.socketPath, resuming: resuming)
    }

    /// The next OFFER on `client`.
    func nextOffer(_ client: CometClient) async -> String? {
        for await event in client.events {
            if case .offer(_, let name, _, _, _) = event { return name }
        }
        return nil
    }

    func take(_ iterator: inout CometSubscription.AsyncIterator, _ count: Int) async throws -> [CometMessage] {
        var got: [CometMessage] = []
        while got.count < count, let m = try await iterator.next() { got.append(m) }
        return got
    }

    func expectCode(_ code: ErrorCode, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> Void) async {
        do {
            try await body()
            XCTFail("expected \(code.name)", file: file, line: line)
        } catch let error as CometError {
            XCTAssertEqual(error.code, code, file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
        }
    }

    func testOfferSubscribeOnceAndIsolation() async throws {
        let consumer = try await connect()
        let producerClient = try await connect()
        let mail = try await producerClient.createPrivate("mail", for: consumer.session.id, size: 10)
        let offered = await nextOffer(consumer)
        XCTAssertEqual(offered, "mail", "the session is told, no side channel needed")
        let subscription = try await consumer.subscribePrivate("mail")
        try await mail.push("hello")
        var iterator = subscription.makeAsyncIterator()
        let got = try await take(&iterator, 1)
        XCTAssertEqual(got.map(\.string), ["hello"])

        await expectCode(.alreadySubscribed) { _ = try await consumer.subscribePrivate("mail") }
        // A second connection of the same session may not read it twice either.
        let sameSession = try await connect(resuming: consumer.session)
        await expectCode(.alreadySubscribed) { _ = try await sameSession.subscribePrivate("mail") }

        // Another session cannot read it, list it, or learn that it exists.
        let other = try await connect()
        await expectCode(.noSuchChannel) { _ = try await other.subscribePrivate("mail") }
        await expectCode(.noSuchChannel) { _ = try await other.subscribe("mail") }
        let visible = try await other.channels()
        XCTAssertFalse(visible.contains { $0.name == "mail" })
        let own = try await consumer.channels()
        XCTAssertEqual(own.first { $0.name == "mail" }?.scope, 1)
        // Pushing to it from anywhere but its producer is refused.
        let intruder = RawConnectionFactory(path: daemon.socketPath)
        XCTAssertEqual(try intruder.pushRefusal(to: mail.id), .notOwner)
        for c in [consumer, producerClient, sameSession, other] { await c.close() }
    }

    func testReconnectAndResumeLosesNothing() async throws {
        var consumer = try await connect()
        let credentials = consumer.session
        let producerClient = try await connect()
        let inbox = try await producerClient.createPrivate("inbox", for: credentials.id, size: 100)
        _ = await nextOffer(consumer)
        let subscription = try await consumer.subscribePrivate("inbox")
        try await inbox.push(batch: (1...10).map { Array("m\($0)".utf8) })
        var iterator = subscription.makeAsyncIterator()
        let firstFive = try await take(&iterator, 5)
        XCTAssertEqual(firstFive.map(\.sequence), [1, 2, 3, 4, 5])
        // Asking for a sixth acknowledges the fifth; make sure that reached the daemon.
        subscription.acknowledge(through: 5)
        try await consumer.ping()
        await consumer.close()

        // While the consumer is away, more messages come.
        try await inbox.push(batch: (11...15).map { Array("m\($0)".utf8) })
        consumer = try await connect(resuming: credentials)
        XCTAssertEqual(consumer.session, credentials)
        let offered = await nextOffer(consumer)
        XCTAssertEqual(offered, "inbox", "RESUME re-offers the session's channels")
        let again = try await consumer.subscribePrivate("inbox")
        XCTAssertEqual(again.info.nextSequence, 6)
        var it2 = again.makeAsyncIterator()
        let rest = try await take(&it2, 10)
        XCTAssertEqual(rest.map(\.sequence), Array(6...15), "nothing lost, nothing skipped")
        XCTAssertEqual(rest.last?.string, "m15")
        await consumer.close()
        await producerClient.close()
    }

    /// A reader isolated to an actor (as on the main actor) takes messages from its chunk without
    /// leaving the actor; asking for the next still acknowledges the ones before it.
    func testAnActorIsolatedReaderAcknowledgesWhatItAskedPast() async throws {
        actor Reader {
            func read(_ subscription: CometSubscription, until last: UInt64) async throws -> [UInt64] {
                var seen: [UInt64] = []
                for try await message in subscription {
                    seen.append(message.sequence)
                    if message.sequence == last { break }
                }
                return seen
            }
        }
        let consumer = try await connect()
        let credentials = consumer.session
        let producerClient = try await connect()
        let inbox = try await producerClient.createPrivate("actor.inbox", for: credentials.id, size: 100)
        _ = await nextOffer(consumer)
        let subscription = try await consumer.subscribePrivate("actor.inbox")
        try await inbox.push(batch: (1...10).map { Array("m\($0)".utf8) })
        let seen = try await Reader().read(subscription, until: 4)
        XCTAssertEqual(seen, [1, 2, 3, 4])
        try await consumer.ping()
        await consumer.close()
        let resumed = try await connect(resuming: credentials)
        _ = await nextOffer(resumed)
        let again = try await resumed.subscribePrivate("actor.inbox")
        XCTAssertEqual(again.info.nextSequence, 4, "1–3 acknowledged by asking past them; 4 was in hand")
        await resumed.close()
        await producerClient.close()
    }

    func testResumeRefusals() async throws {
        let consumer = try await connect()
        let good = consumer.session
        do {
            _ = try await connect(resuming: SessionCredentials(id: good.id, tokenHigh: good.tokenHigh, tokenLow: good.tokenLow ^ 1))
            XCTFail("a wrong token resumed")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .badToken)
        }
        do {
            _ = try await connect(resuming: SessionCredentials(id: good.id ^ 0xFF, tokenHigh: 1, tokenLow: 2))
            XCTFail("an unknown session resumed")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .noSuchSession)
        }
        await consumer.close()
    }

    func testAnotherUserCannotResume() async throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to run a client as another uid") }
        let consumer = try await connect()
        let file = daemon.directory.appendingPathComponent("session")
        try "\(consumer.session)\n".write(to: file, atomically: true, encoding: .utf8)
        chmod(file.path, 0o644)
        let r = try runTool("/usr/bin/setpriv", [
            "--reuid=65534", "--regid=65534", "--clear-groups",
            Daemon.executable("comet").path, "listen", "x", "--private", "--session-file", file.path, "--socket", daemon.socketPath,
        ], absolute: true)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("WRONG_USER"), r.stderr)
        await consumer.close()
    }

    func testFullOnANonReadingConsumerWithBoundedMemory() async throws {
        let consumer = try await connect()
        let producerClient = try await connect()
        let queue = try await producerClient.createPrivate("queue", for: consumer.session.id, size: 3)
        _ = await nextOffer(consumer)
        let subscription = try await consumer.subscribePrivate("queue")
        for i in 1...3 { try await queue.push("q\(i)") }
        await expectCode(.channelFull) { try await queue.push("q4") }
        await expectCode(.channelFull) { try await queue.push("q5") }
        var delivered: [UInt64] = []
        do {
            for try await m in subscription { delivered.append(m.sequence) }
            XCTFail("no full")
        } catch let full as ChannelFull {
            XCTAssertEqual(full.channel, "queue")
        }
        XCTAssertTrue(delivered.allSatisfy { $0 <= 3 })
        let listed = try await consumer.channels().first { $0.name == "queue" }
        XCTAssertEqual(listed?.buffered, 0, "pending data was dropped")
        await consumer.close()
        await producerClient.close()
    }

    func testSizeMessagesUnacknowledgedAreAccepted() async throws {
        let consumer = try await connect()
        let producerClient = try await connect()
        let c = try await producerClient.createPrivate("exact", for: consumer.session.id, size: 5)
        for i in 1...5 { try await c.push("\(i)") }
        let subscription = try await consumer.subscribePrivate("exact")
        var iterator = subscription.makeAsyncIterator()
        _ = try await take(&iterator, 5)
        subscription.acknowledge(through: 5)
        try await consumer.ping()
        try await c.push(batch: (6...10).map { Array("\($0)".utf8) })
        let more = try await take(&iterator, 5)
        XCTAssertEqual(more.map(\.sequence), Array(6...10))
        await consumer.close()
        await producerClient.close()
    }

    func testSessionEndAfterGraceClosesChannelsAndTellsProducers() async throws {
        let consumer = try await connect()
        let id = consumer.session.id
        let producerClient = try await connect()
        let c = try await producerClient.createPrivate("short", for: id, size: 5)
        let sessionsBefore = try await producerClient.sessions()
        XCTAssertTrue(sessionsBefore.contains { $0.id == id && $0.privateChannels == 1 && $0.connections == 1 })
        await consumer.close()
        try await Task.sleep(for: .milliseconds(500))
        let during = try await producerClient.sessions()
        XCTAssertTrue(during.contains { $0.id == id && $0.connections == 0 }, "kept during the grace period")
        var ended: (UInt64, ErrorCode)?
        for await event in producerClient.events {
            if case .ended(let channel, let code, _) = event {
                ended = (channel, code)
                break
            }
        }
        XCTAssertEqual(ended?.0, c.id)
        XCTAssertEqual(ended?.1, .sessionEnded)
        await expectCode(.noSuchChannel) { try await c.push("late") }
        let after = try await producerClient.sessions()
        XCTAssertFalse(after.contains { $0.id == id })
        await producerClient.close()
    }

    func testProducerCloseDeliversThenClosed() async throws {
        let consumer = try await connect()
        let producerClient = try await connect()
        let c = try await producerClient.createPrivate("bye", for: consumer.session.id)
        let subscription = try await consumer.subscribePrivate("bye")
        try await c.push(batch: [Array("a".utf8), Array("b".utf8)])
        try await c.close()
        var got: [String] = []
        for try await m in subscription { got.append(m.string) }
        XCTAssertEqual(got, ["a", "b"])
        XCTAssertEqual(subscription.info.closedAfter, 2)
        await consumer.close()
        await producerClient.close()
    }
}

/// Raw requests that the Swift client would never send.
struct RawConnectionFactory {
    let path: String

    func pushRefusal(to channel: UInt64) throws -> ErrorCode {
        let c = try RawConnection(path)
        _ = try c.hello()
        return try c.expectError(c.send(.push(channel: channel, payload: ByteBuffer(string: "x"))))
    }
}
