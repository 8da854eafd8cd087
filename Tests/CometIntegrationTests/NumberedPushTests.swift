import CometWire
import Foundation
import NIOCore
import XCTest

/// PUSH_NUMBERED as PROTOCOL.md §6.18 has it, frame by frame against a real daemon: resends
/// skipped and answered with their first sequence numbers, gaps and bad numbers refused, a
/// numbered channel refusing unnumbered pushes, and ADOPT's last_number.
final class NumberedPushTests: XCTestCase {
    private func payloads(_ texts: String...) -> MessageBatch { MessageBatch(texts.map { ByteBuffer(string: $0) }) }

    /// A daemon, a reader's connection, and a producer's connection that created private
    /// channel `name` for the reader's session.
    private func privateChannel(_ name: String, size: UInt32) throws -> (Daemon, RawConnection, RawConnection, UInt64) {
        let daemon = try Daemon()
        let reader = try RawConnection(daemon.socketPath)
        let session = try reader.hello().sessionID
        let producer = try RawConnection(daemon.socketPath)
        _ = try producer.hello()
        var created = try producer.expectOK(producer.send(.createPrivate(name: name, kind: .private, size: size, session: session)))
        return (daemon, reader, producer, try CreateReply(from: &created).channel)
    }

    func testResendsGapsAndBadNumbers() throws {
        let daemon = try Daemon()
        defer { daemon.stop() }
        let producer = try RawConnection(daemon.socketPath)
        XCTAssertTrue(try producer.hello().servesNumberedPushes)
        var created = try producer.expectOK(producer.send(.create(name: "numbered", kind: .buffered, size: 100)))
        let reply = try CreateReply(from: &created)
        let channel = reply.channel
        // Two unnumbered pushes first: numbering starts at 1 at sequence 3.
        _ = try producer.expectOK(producer.send(.pushBatch(channel: channel, payloads: payloads("u1", "u2"))))
        func push(_ number: UInt64, _ texts: [String]) throws -> (UInt64, UInt32) {
            var body = try producer.expectOK(producer.send(.pushNumbered(channel: channel, number: number, payloads: MessageBatch(texts.map { ByteBuffer(string: $0) }))))
            let answer = try PushReply(from: &body)
            return (answer.firstSequence, answer.count)
        }
        XCTAssertEqual(try producer.expectError(producer.send(.pushNumbered(channel: channel, number: 2, payloads: payloads("x")))), .outOfOrder)
        XCTAssertTrue(try push(1, ["n1", "n2", "n3"]) == (3, 3))
        XCTAssertTrue(try push(2, ["n2", "n3"]) == (4, 2), "all in: skipped, answered with their sequence numbers")
        XCTAssertTrue(try push(3, ["n3", "n4", "n5"]) == (5, 3), "half in: the rest appended")
        XCTAssertTrue(try push(6, ["n6"]) == (8, 1))
        XCTAssertEqual(try producer.expectError(producer.send(.pushNumbered(channel: channel, number: 8, payloads: payloads("gap")))), .outOfOrder)
        XCTAssertEqual(try producer.expectError(producer.send(.pushNumbered(channel: channel, number: 0, payloads: payloads("zero")))), .invalidArgument)
        XCTAssertEqual(try producer.expectError(producer.send(.pushNumbered(channel: channel, number: .max, payloads: payloads("a", "b")))), .invalidArgument)
        XCTAssertEqual(try producer.expectError(producer.send(.push(channel: channel, payload: ByteBuffer(string: "plain")))), .invalidArgument,
                       "a numbered channel takes numbered pushes only")
        // Readers see each message once: u1 u2 n1…n6.
        let reader = try RawConnection(daemon.socketPath)
        _ = try reader.hello()
        _ = try reader.expectOK(reader.send(.subscribe(name: "numbered", position: .oldest, epoch: 0, wait: false)))
        var read: [String] = []
        while read.count < 8, case .message(_, let sequence, let payload)? = try reader.read() {
            read.append("\(sequence)=\(String(buffer: payload))")
        }
        XCTAssertEqual(read, ["1=u1", "2=u2", "3=n1", "4=n2", "5=n3", "6=n4", "7=n5", "8=n6"])
        // ADOPT on the owning connection: last sequence 8, last number 6.
        var adopted = try producer.expectOK(producer.send(.adopt(channel: channel, tokenHigh: reply.tokenHigh, tokenLow: reply.tokenLow)))
        XCTAssertEqual(try AdoptReply(from: &adopted), AdoptReply(channel: channel, epoch: reply.epoch, lastSequence: 8, lastNumber: 6))
        // The connection goes on after every refusal.
        _ = try producer.expectOK(producer.send(.ping))
    }

    func testPrivateChannelsAreNumberedToo() throws {
        let (daemon, reader, producer, channel) = try privateChannel("inbox", size: 10)
        defer { daemon.stop() }
        for number in [1, 1, 2, 1] as [UInt64] {
            var body = try producer.expectOK(producer.send(.pushNumbered(channel: channel, number: number, payloads: payloads("p\(number)"))))
            XCTAssertEqual(try PushReply(from: &body).firstSequence, number)
        }
        _ = try reader.expectOK(reader.send(.subscribe(name: "inbox", position: .next, epoch: 0, wait: false, scope: .clientProcess)))
        var read: [String] = []
        while read.count < 2, case .message(_, _, let payload)? = try reader.read() { read.append(String(buffer: payload)) }
        XCTAssertEqual(read, ["p1", "p2"])
    }

    /// An overflowed private channel refuses every push, a resend of what it had included.
    func testAnOverflowedPrivateChannelRefusesResends() throws {
        let (daemon, _, producer, channel) = try privateChannel("small", size: 2)
        defer { daemon.stop() }
        _ = try producer.expectOK(producer.send(.pushNumbered(channel: channel, number: 1, payloads: payloads("a", "b"))))
        XCTAssertEqual(try producer.expectError(producer.send(.pushNumbered(channel: channel, number: 3, payloads: payloads("c")))), .channelFull)
        XCTAssertEqual(try producer.expectError(producer.send(.pushNumbered(channel: channel, number: 1, payloads: payloads("a")))), .channelFull)
    }
}
