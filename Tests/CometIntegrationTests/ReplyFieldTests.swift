import CometWire
import Foundation
import NIOCore
import XCTest

/// Fields an independent client (written from PROTOCOL.md alone) found wrong: a private
/// channel's SUBSCRIBE reply names its producer (§6.5), and STATS counts every subscription that
/// ended with FULL, also one whose `from N` was already evicted (§6.16).
final class ReplyFieldTests: XCTestCase {
    func testPrivateSubscribeReplyCarriesTheProducer() throws {
        let daemon = try Daemon()
        defer { daemon.stop() }
        let reader = try RawConnection(daemon.socketPath)
        let hello = try reader.hello()
        let producer = try RawConnection(daemon.socketPath)
        _ = try producer.hello()
        _ = try producer.expectOK(producer.send(.createPrivate(name: "inbox", kind: .private, size: 10, session: hello.sessionID)))
        var body = try reader.expectOK(reader.send(.subscribe(name: "inbox", position: .next, epoch: 0, wait: false, scope: .clientProcess)))
        let reply = try SubscribeReply(from: &body)
        XCTAssertFalse(reply.waiting)
        XCTAssertEqual(reply.owner, Owner(uid: getuid(), gid: getgid()), "the producer's uid and gid, not 'unknown'")
    }

    func testStatsCountTheFullOfAnEvictedStartingPoint() throws {
        let daemon = try Daemon()
        defer { daemon.stop() }
        let producer = try RawConnection(daemon.socketPath)
        _ = try producer.hello()
        var created = try producer.expectOK(producer.send(.create(name: "short", kind: .buffered, size: 5)))
        let channel = try CreateReply(from: &created).channel
        for i in 0..<20 { _ = try producer.expectOK(producer.send(.push(channel: channel, payload: ByteBuffer(string: "m\(i)")))) }
        let reader = try RawConnection(daemon.socketPath)
        _ = try reader.hello()
        _ = try reader.expectOK(reader.send(.subscribe(name: "short", position: .from(2), epoch: 0, wait: false)))
        guard case .full(_, let first) = try reader.read() else { return XCTFail("FULL expected for an evicted starting point") }
        XCTAssertEqual(first, 16)
        var body = try reader.expectOK(reader.send(.stats))
        let stats = try StatsReply(from: &body)
        XCTAssertEqual(stats.channelStats.first { $0.name == "short" }?.fullEvents, 1)
    }
}
