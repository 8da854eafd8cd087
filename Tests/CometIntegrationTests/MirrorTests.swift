import Comet
import CometWire
import Foundation
import NIOCore
import XCTest

/// Imports fed through MIRROR, MIRROR_PUSH and MIRROR_STATE (PROTOCOL.md §6.19–6.21), frame by
/// frame against a real daemon: what comet-bridge does, without NATS.
final class MirrorTests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws {
        daemon = try Daemon(arguments: ["--import-grace", "0.5"])
    }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    func payloads(_ texts: String...) -> MessageBatch { MessageBatch(texts.map { ByteBuffer(string: $0) }) }

    /// A raw feeder: MIRROR, and the reply's handle and last sequence.
    func mirror(_ feeder: RawConnection, _ name: String, epoch: UInt64, next: UInt64 = 1, size: UInt32 = 100) throws -> MirrorReply {
        var body = try feeder.expectOK(feeder.send(.mirror(name: name, epoch: epoch, next: next, size: size, newest: false)))
        return try MirrorReply(from: &body)
    }

    func push(_ feeder: RawConnection, _ handle: UInt64, _ first: UInt64, _ texts: [String]) throws {
        _ = try feeder.expectOK(feeder.send(.mirrorPush(mirror: handle, first: first, payloads: MessageBatch(texts.map { ByteBuffer(string: $0) }))))
    }

    func state(_ feeder: RawConnection, _ handle: UInt64, _ state: MirrorState, last: UInt64 = 0, reason: String = "") throws {
        _ = try feeder.expectOK(feeder.send(.mirrorState(mirror: handle, state: state, last: last, reason: reason)))
    }

    /// One reader per subscription (a subscription has one iterator), with deadlines.
    typealias Reader = FederationTests.Reader

    func take(_ reader: Reader, _ count: Int) async throws -> [CometMessage] { try await reader.take(count, within: 20) }

    func end(_ reader: Reader) async -> Error? { await reader.end(within: 20) }

    func testReadersGetTheOriginsNumbersEpochsGapsAndEnd() async throws {
        let feeder = try RawConnection(daemon.socketPath)
        let hello = try feeder.hello()
        XCTAssertTrue(hello.servesMirrors)
        let declared = try mirror(feeder, "imp.a", epoch: 0)
        XCTAssertEqual(declared.lastSequence, 0)
        let reader = try await CometClient.connect(to: daemon.socketPath)
        // While the feeder catches up, a SUBSCRIBE waits for it (so that `oldest` sees it all).
        let early = Task { try await reader.subscribe("imp.a", from: .oldest) }
        try await Task.sleep(nanoseconds: 200_000_000)
        let started = try mirror(feeder, "imp.a", epoch: 77, next: 5)
        XCTAssertEqual(started.mirror, declared.mirror, "one handle per import")
        XCTAssertEqual(started.lastSequence, 0)
        try push(feeder, started.mirror, 5, ["e5", "e6", "e7"])
        try state(feeder, started.mirror, .live)
        let sub = Reader(try await early.value)
        XCTAssertEqual(sub.subscription.info.epoch, 77)
        let first = try await take(sub, 3)
        XCTAssertEqual(first.map(\.sequence), [5, 6, 7])
        XCTAssertEqual(first.map(\.string), ["e5", "e6", "e7"])

        // A resend is skipped; what follows it goes on.
        try push(feeder, started.mirror, 6, ["never", "e7-again", "e8"])
        let next = try await take(sub, 1)
        XCTAssertEqual(next.map(\.sequence), [8])
        XCTAssertEqual(next.map(\.string), ["e8"])
        // The same epoch named again: the mirror goes on after what it has.
        XCTAssertEqual(try mirror(feeder, "imp.a", epoch: 77).lastSequence, 8)
        // A jump: a reader that needed the gap gets FULL at it.
        try push(feeder, started.mirror, 20, ["e20"])
        let full = await end(sub)
        XCTAssertEqual((full as? ChannelFull)?.firstAvailable, 20, "FULL at the gap, got \(String(describing: full))")

        // Listed like a channel, with the origin's numbers and epoch.
        let listed = try await reader.channels().first { $0.name == "imp.a" }
        XCTAssertEqual(listed?.epoch, 77)
        XCTAssertEqual(listed?.lastSequence, 20)

        // A new epoch at the origin: readers of the old one get RESET.
        let old = Reader(try await reader.subscribe("imp.a", from: .oldest))
        _ = try await take(old, 1)
        _ = try mirror(feeder, "imp.a", epoch: 78)
        let reset = await end(old)
        XCTAssertEqual((reset as? EpochChanged)?.epoch, 78, "RESET, got \(String(describing: reset))")
        // The origin closed its epoch: readers drain, then CLOSED.
        let fresh = Reader(try await reader.subscribe("imp.a", from: .oldest))
        try push(feeder, started.mirror, 1, ["n1", "n2"])
        try state(feeder, started.mirror, .closed, last: 2)
        let drained = try await take(fresh, 2)
        XCTAssertEqual(drained.map(\.string), ["n1", "n2"])
        let closed = await end(fresh)
        XCTAssertNil(closed, "CLOSED after the last message, got \(String(describing: closed))")
        await reader.close()
    }

    /// A reader of an import never holds its feeder, but it loses nothing a socket reader would
    /// not: one that maps the ring and stops reading while the import moves on by fifty rings is
    /// detached before it is overtaken and handed the rest over the socket (what CI once saw
    /// fail: FULL at the ring's first message, which a socket reader with the same pause never got).
    func testAMappedReaderOfAnImportThatPausesLosesNothing() async throws {
        let feeder = try RawConnection(daemon.socketPath)
        _ = try feeder.hello()
        let handle = try mirror(feeder, "imp.p", epoch: 5, size: 100).mirror
        try state(feeder, handle, .live)
        try push(feeder, handle, 1, (1...10).map { "p\($0)" })
        let client = try await CometClient.connect(to: daemon.socketPath)
        let reader = Reader(try await client.subscribe("imp.p", from: .oldest))
        let head = try await take(reader, 10)
        XCTAssertEqual(head.map(\.sequence), Array(1...10))
        XCTAssertTrue(reader.subscription.info.mapped, "read from the ring while it keeps up")
        // Nobody reads while 5,000 messages go through a ring of 100.
        let total = 5_000
        let started = Date()
        for first in stride(from: 11, through: total, by: 50) {
            try push(feeder, handle, UInt64(first), (first...min(total, first + 49)).map { "p\($0)" })
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.9, "the feeder never waits for a reader (the grace is 1 s)")
        let rest = try await take(reader, total - 10)
        XCTAssertTrue(rest.map(\.sequence) == Array(11...UInt64(total)), "every message once, in order")
        XCTAssertTrue(rest.allSatisfy { $0.string == "p\($0.sequence)" })
        XCTAssertFalse(reader.subscription.info.mapped, "detached from the ring, served over the socket")
        XCTAssertTrue(daemon.log.contains("a mapped reader fell behind its ring"), "the daemon says so: \(daemon.log)")
        await client.close()
    }

    func testAStalledImportTellsItsReadersAndGoesOnWhenFedAgain() async throws {
        let feeder = try RawConnection(daemon.socketPath)
        _ = try feeder.hello()
        let handle = try mirror(feeder, "imp.s", epoch: 9).mirror
        try push(feeder, handle, 1, ["a", "b"])
        try state(feeder, handle, .live)
        let reader = try await CometClient.connect(to: daemon.socketPath)
        let sub = Reader(try await reader.subscribe("imp.s", from: .oldest))
        _ = try await take(sub, 2)
        try state(feeder, handle, .stalled, last: 2, reason: "NATS subject comet.s unread for 10 s")
        // The reader has everything: it is told, not left waiting.
        let told = await end(sub)
        let error = try XCTUnwrap(told as? CometError, "got \(String(describing: told))")
        XCTAssertEqual(error.code, .upstreamUnreachable)
        XCTAssertTrue(error.message.contains("after message 2"), error.message)
        XCTAssertTrue(error.message.contains("NATS subject comet.s unread"), error.message)
        // Subscribing again while stalled: the same answer, after what the mirror holds.
        let again = Reader(try await reader.subscribe("imp.s", from: .from(3), epoch: 9))
        let stillStalled = await end(again)
        XCTAssertEqual((stillStalled as? CometError)?.code, .upstreamUnreachable)
        // Fed again: a reader resuming from where it was goes on.
        try push(feeder, handle, 3, ["c"])
        let resumed = Reader(try await reader.subscribe("imp.s", from: .from(3), epoch: 9))
        let got = try await take(resumed, 1)
        XCTAssertEqual(got.map(\.string), ["c"])

        // The feeder goes (a bridge crash): readers keep the mirror; past the grace they are told.
        let waiting = Reader(try await reader.subscribe("imp.s", from: .from(4), epoch: 9))
        shutdown(feeder.fd, CInt(SHUT_RDWR))
        let orphaned = await end(waiting)
        XCTAssertEqual((orphaned as? CometError)?.code, .upstreamUnreachable, "got \(String(describing: orphaned))")
        XCTAssertTrue((orphaned as? CometError)?.message.contains("nothing has fed") ?? false)
        // Another feeder takes the import over and goes on after what it has.
        let next = try RawConnection(daemon.socketPath)
        _ = try next.hello()
        let taken = try mirror(next, "imp.s", epoch: 9)
        XCTAssertEqual(taken.lastSequence, 3)
        // A new feeder reads its origin again first: SUBSCRIBE waits until it says it has.
        let subscribing = Task { try await reader.subscribe("imp.s", from: .from(4), epoch: 9) }
        try push(next, taken.mirror, 4, ["d"])
        try state(next, taken.mirror, .live)
        let later = Reader(try await subscribing.value)
        let more = try await take(later, 1)
        XCTAssertEqual(more.map(\.sequence), [4])
        await reader.close()
    }

    /// A bridge that stalls before it has caught up (its subject unread since it started) and
    /// then names the epoch: a reader waiting to resume at N waits until the import has caught
    /// up, instead of being refused because the new mirror does not hold N yet.
    func testAReaderResumingAcrossAStallBeforeCatchingUpWaitsForIt() async throws {
        let feeder = try RawConnection(daemon.socketPath)
        _ = try feeder.hello()
        let handle = try mirror(feeder, "imp.r", epoch: 0).mirror
        try state(feeder, handle, .stalled, reason: "the JetStream subject has not been read yet")
        let reader = try await CometClient.connect(to: daemon.socketPath)
        let waiting = Reader(try await reader.subscribe("imp.r", from: .from(3), epoch: 7, wait: true))
        _ = try mirror(feeder, "imp.r", epoch: 7)
        try push(feeder, handle, 1, ["a"])  // ends the stall; still catching up
        try push(feeder, handle, 2, ["b", "c"])
        try state(feeder, handle, .live)
        let got = try await take(waiting, 1)
        XCTAssertEqual(got.map(\.sequence), [3])
        XCTAssertEqual(got.map(\.string), ["c"])
        await reader.close()
    }

    func testWhoMayFeedAnImportAndWhatIsRefused() async throws {
        let feeder = try RawConnection(daemon.socketPath)
        _ = try feeder.hello()
        let handle = try mirror(feeder, "imp.r", epoch: 3).mirror
        // A second feeder while the first is there: refused.
        let other = try RawConnection(daemon.socketPath)
        _ = try other.hello()
        XCTAssertEqual(try other.expectError(other.send(.mirror(name: "imp.r", epoch: 3, next: 1, size: 10, newest: false))), .channelExists)
        // Pushing to an import it does not feed, or to none.
        XCTAssertEqual(try other.expectError(other.send(.mirrorPush(mirror: handle, first: 1, payloads: payloads("x")))), .notOwner)
        XCTAssertEqual(try other.expectError(other.send(.mirrorPush(mirror: (1 << 62) | 999, first: 1, payloads: payloads("x")))), .noSuchChannel)
        // An import's name is not a local channel's, and the other way round.
        let producer = try await CometClient.connect(to: daemon.socketPath)
        do {
            _ = try await producer.create("imp.r")
            XCTFail("created a channel over an import")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .channelExists)
        }
        _ = try await producer.create("local.x")
        XCTAssertEqual(try other.expectError(other.send(.mirror(name: "local.x", epoch: 3, next: 1, size: 10, newest: false))), .channelExists)
        // Bad values.
        XCTAssertEqual(try other.expectError(other.send(.mirror(name: "imp.z", epoch: 3, next: 1, size: 0, newest: false))), .invalidArgument)
        XCTAssertEqual(try other.expectError(other.send(.mirror(name: "bad name", epoch: 3, next: 1, size: 10, newest: false))), .invalidName)
        // nats:// addresses are comet-bridge's now: a clear refusal.
        do {
            _ = try await producer.subscribeExternal(address: "nats://127.0.0.1:4222/comet.x", channel: "x")
            XCTFail("cometd relayed from NATS")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .unsupported)
            XCTAssertTrue(error.message.contains("comet-bridge"), error.message)
        }
        // Another user: no import without a `mirror` rule, and never someone else's.
        let denied = try Hostile.run(daemon, "mirror", ["imp.hostile", "\(handle)"])
        XCTAssertEqual(denied["mirror"] as? String, "PERMISSION_DENIED")
        XCTAssertEqual(denied["push"] as? String, "NOT_OWNER")
        let policy = try Daemon.temporaryDirectory().appendingPathComponent("policy.conf")
        try "mirror imp.* user:\(Hostile.uid)\n".write(to: policy, atomically: true, encoding: .utf8)
        let ruled = try Daemon(arguments: ["--policy", policy.path])
        defer { ruled.stop() }
        let granted = try Hostile.run(ruled, "mirror", ["imp.bridge", "\((1 << 62) | 999)"])
        XCTAssertEqual(granted["mirror"] as? String, "OK")
        XCTAssertEqual(granted["push"] as? String, "NO_SUCH_CHANNEL")
        let outside = try Hostile.run(ruled, "mirror", ["other.name", "1"])
        XCTAssertEqual(outside["mirror"] as? String, "PERMISSION_DENIED")
        await producer.close()
    }
}
