import CometWire
import CometSupervision
import Foundation
import NIOCore
import XCTest

/// kill -9 with the file-descriptor store (the test supervisor standing in for systemd):
/// channels, numbering, epochs, buffered messages, sessions and unacknowledged private messages
/// come back; producers take their channels back with their token (docs/RESTARTS.md, "Crash").
final class CrashRecoveryTests: XCTestCase {
    private func messages(_ raw: RawConnection, count: Int) throws -> [(UInt64, String)] {
        var got: [(UInt64, String)] = []
        while got.count < count, let frame = try raw.read() {
            if case .message(_, let sequence, let payload) = frame { got.append((sequence, String(buffer: payload))) }
        }
        return got
    }

    func testEverythingBufferedSurvivesKillNine() throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        // A producer with a site channel of 100 and 150 messages pushed (the last 100 kept).
        let producer = try RawConnection(supervisor.socketPath)
        _ = try producer.hello()
        var body = try producer.expectOK(producer.send(.create(name: "crashy", kind: .buffered, size: 100)))
        let created = try CreateReply(from: &body)
        XCTAssertNotEqual(created.tokenHigh | created.tokenLow, 0, "CREATE gives a producer token")
        for i in 1...150 { _ = try producer.expectOK(producer.send(.push(channel: created.channel, payload: ByteBuffer(string: "m\(i)")))) }
        // A private channel to a reader's session: 5 messages, 2 acknowledged.
        let reader = try RawConnection(supervisor.socketPath)
        let hello = try reader.hello()
        var privBody = try producer.expectOK(producer.send(.createPrivate(name: "inbox", kind: .private, size: 10, session: hello.sessionID)))
        let inbox = try CreateReply(from: &privBody)
        for i in 1...5 { _ = try producer.expectOK(producer.send(.push(channel: inbox.channel, payload: ByteBuffer(string: "p\(i)")))) }
        var sub = try reader.expectOK(reader.send(.subscribe(name: "inbox", position: .next, epoch: 0, wait: false, scope: .clientProcess)))
        let subscription = try SubscribeReply(from: &sub)
        XCTAssertEqual(try messages(reader, count: 5).map(\.1), ["p1", "p2", "p3", "p4", "p5"])
        _ = try reader.expectOK(reader.send(.ack(subscription: subscription.subscription, sequence: 2)))

        supervisor.stop(SIGKILL)
        XCTAssertGreaterThan(supervisor.stored.keys.filter { $0.hasPrefix("comet-state") }.count, 0, "\(supervisor.stored)")
        try supervisor.start()
        XCTAssertTrue(supervisor.log.contains("recovered after a crash"), supervisor.log)

        // A reader resumes the site channel with its epoch: the 100 messages kept, numbered as before.
        let again = try RawConnection(supervisor.socketPath)
        _ = try again.hello()
        var resumed = try again.expectOK(again.send(.subscribe(name: "crashy", position: .from(51), epoch: created.epoch, wait: false)))
        let reply = try SubscribeReply(from: &resumed)
        XCTAssertEqual(reply.epoch, created.epoch)
        let site = try messages(again, count: 100)
        XCTAssertEqual(site.map(\.0), Array(51...150))
        XCTAssertEqual(site.last?.1, "m150")

        // The session resumes; its private channel still has the three unacknowledged messages.
        let back = try RawConnection(supervisor.socketPath)
        _ = try back.hello()
        _ = try back.expectOK(back.send(.resume(session: hello.sessionID, tokenHigh: hello.tokenHigh, tokenLow: hello.tokenLow)))
        _ = try back.expectOK(back.send(.subscribe(name: "inbox", position: .next, epoch: 0, wait: false, scope: .clientProcess)))
        XCTAssertEqual(try messages(back, count: 3).map(\.1), ["p3", "p4", "p5"])

        // The producer takes its channels back with the token and numbering goes on; a wrong token is refused.
        let producerAgain = try RawConnection(supervisor.socketPath)
        _ = try producerAgain.hello()
        XCTAssertEqual(try producerAgain.expectError(producerAgain.send(.adopt(channel: created.channel, tokenHigh: 1, tokenLow: 2))), .badToken)
        var adopted = try producerAgain.expectOK(producerAgain.send(.adopt(channel: created.channel, tokenHigh: created.tokenHigh, tokenLow: created.tokenLow)))
        let adoptReply = try AdoptReply(from: &adopted)
        XCTAssertEqual(adoptReply.lastSequence, 150)
        XCTAssertEqual(adoptReply.epoch, created.epoch)
        var pushed = try producerAgain.expectOK(producerAgain.send(.push(channel: created.channel, payload: ByteBuffer(string: "m151"))))
        XCTAssertEqual(try PushReply(from: &pushed).firstSequence, 151)
        XCTAssertEqual(try messages(again, count: 1).map(\.1), ["m151"])
        _ = try producerAgain.expectOK(producerAgain.send(.adopt(channel: inbox.channel, tokenHigh: inbox.tokenHigh, tokenLow: inbox.tokenLow)))
        _ = try producerAgain.expectOK(producerAgain.send(.push(channel: inbox.channel, payload: ByteBuffer(string: "p6"))))
        XCTAssertEqual(try messages(back, count: 1).map(\.1), ["p6"])
        XCTAssertEqual(supervisor.stop(SIGTERM) & 0x7f, 0)
    }

    /// A channel whose producer does not come back closes after the grace period: readers get
    /// what is buffered, then CLOSED.
    func testAChannelWhoseProducerDoesNotComeBackCloses() throws {
        let supervisor = try Supervisor(arguments: ["--session-grace", "0.5"], executable: Daemon.releaseDaemon)
        try supervisor.start()
        let producer = try RawConnection(supervisor.socketPath)
        _ = try producer.hello()
        var body = try producer.expectOK(producer.send(.create(name: "orphan", kind: .buffered, size: 10)))
        let created = try CreateReply(from: &body)
        _ = try producer.expectOK(producer.send(.push(channel: created.channel, payload: ByteBuffer(string: "last words"))))
        supervisor.stop(SIGKILL)
        try supervisor.start()
        let reader = try RawConnection(supervisor.socketPath)
        _ = try reader.hello()
        _ = try reader.expectOK(reader.send(.subscribe(name: "orphan", position: .oldest, epoch: created.epoch, wait: false)))
        var sawMessage = false
        var sawClosed = false
        while let frame = try reader.read(timeout: 5_000) {
            if case .message(_, 1, let payload) = frame { sawMessage = String(buffer: payload) == "last words" }
            if case .closed(_, 1) = frame {
                sawClosed = true
                break
            }
        }
        XCTAssertTrue(sawMessage)
        XCTAssertTrue(sawClosed)
        supervisor.stop(SIGTERM)
    }

    /// A channel closed while a reader is far behind: a planned restart, then a kill -9, do not
    /// take the rest from that reader. It resumes by name and epoch and reads every message, then
    /// CLOSED, even though a new channel of that name exists by then. Once no reader reads it and
    /// the grace period is over, the closed channel is gone, from memory and from the store.
    func testAClosedChannelsReaderResumesAfterKillNine() throws {
        let supervisor = try Supervisor(arguments: ["--session-grace", "2"], executable: Daemon.releaseDaemon)
        try supervisor.start()
        let producer = try RawConnection(supervisor.socketPath)
        _ = try producer.hello()
        var body = try producer.expectOK(producer.send(.create(name: "closing", kind: .buffered, size: 1000)))
        let created = try CreateReply(from: &body)
        let reader = try RawConnection(supervisor.socketPath)
        _ = try reader.hello()
        _ = try reader.expectOK(reader.send(.subscribe(name: "closing", position: .oldest, epoch: 0, wait: false)))
        // 1000 messages of 4 KiB: far more than the reader's socket holds, so the daemon's cursor
        // for it stays behind while it does not read.
        let filler = String(repeating: "x", count: 4096)
        for i in 1...1000 { _ = try producer.expectOK(producer.send(.push(channel: created.channel, payload: ByteBuffer(string: "m\(i) \(filler)")))) }
        let firstTen = try messages(reader, count: 10)
        XCTAssertEqual(firstTen.map(\.0), Array(1...10))
        _ = try producer.expectOK(producer.send(.close(channel: created.channel)))

        // A planned restart carries the closed channel and the reader's subscription; a kill -9
        // then cuts the reader off.
        try supervisor.restart(SIGTERM)
        supervisor.stop(SIGKILL)
        try supervisor.start()
        XCTAssertTrue(supervisor.log.contains("recovered after a crash"), supervisor.log)

        // Its name is free: a new channel of that name, another epoch.
        let next = try RawConnection(supervisor.socketPath)
        _ = try next.hello()
        var nextBody = try next.expectOK(next.send(.create(name: "closing", kind: .buffered, size: 10)))
        XCTAssertNotEqual(try CreateReply(from: &nextBody).epoch, created.epoch)

        // The reader resumes the closed channel by its epoch: everything from 11, then CLOSED.
        let again = try RawConnection(supervisor.socketPath)
        _ = try again.hello()
        _ = try again.expectOK(again.send(.subscribe(name: "closing", position: .from(11), epoch: created.epoch, wait: false)))
        var sequences: [UInt64] = []
        var closedAt: UInt64?
        while closedAt == nil, let frame = try again.read() {
            switch frame {
            case .message(_, let sequence, let payload):
                XCTAssertTrue(String(buffer: payload).hasPrefix("m\(sequence) "))
                sequences.append(sequence)
            case .closed(_, let last): closedAt = last
            default: continue
            }
        }
        XCTAssertEqual(sequences, Array(11...1000))
        XCTAssertEqual(closedAt, 1000)

        // Nobody reads it and the grace period is over: it is gone, also after another crash.
        Thread.sleep(forTimeInterval: 2.5)
        supervisor.stop(SIGKILL)
        try supervisor.start()
        let late = try RawConnection(supervisor.socketPath)
        _ = try late.hello()
        XCTAssertEqual(
            try late.expectError(late.send(.subscribe(name: "closing", position: .from(11), epoch: created.epoch, wait: false))),
            .epochMismatch)
        XCTAssertEqual(supervisor.stop(SIGTERM) & 0x7f, 0)
    }

    /// Without a reader, a closed channel is not kept: after a kill -9 a reader resuming it finds
    /// no channel (nothing was owed to anyone).
    func testAClosedChannelWithoutReadersIsNotKept() throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        let producer = try RawConnection(supervisor.socketPath)
        _ = try producer.hello()
        var body = try producer.expectOK(producer.send(.create(name: "unread", kind: .buffered, size: 10)))
        let created = try CreateReply(from: &body)
        _ = try producer.expectOK(producer.send(.push(channel: created.channel, payload: ByteBuffer(string: "m1"))))
        _ = try producer.expectOK(producer.send(.close(channel: created.channel)))
        supervisor.stop(SIGKILL)
        try supervisor.start()
        let reader = try RawConnection(supervisor.socketPath)
        _ = try reader.hello()
        XCTAssertEqual(
            try reader.expectError(reader.send(.subscribe(name: "unread", position: .from(1), epoch: created.epoch, wait: false))),
            .noSuchChannel)
        XCTAssertEqual(supervisor.stop(SIGTERM) & 0x7f, 0)
    }
}
