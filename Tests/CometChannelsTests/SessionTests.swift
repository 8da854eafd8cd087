import CometChannels
import XCTest

final class SessionRegistryTests: XCTestCase {
    func refusal(_ body: () throws -> Void) -> ChannelRefusal.Code? {
        do {
            try body()
            return nil
        } catch {
            return (error as? ChannelRefusal)?.code
        }
    }

    func testResumeNeedsTheTokenAndTheSameUser() throws {
        let r = SessionRegistry()
        let s = r.open(uid: 1000, connection: 1)
        XCTAssertNotEqual(s.id, 0)
        let wrong = SessionToken(high: s.token.high ^ 1, low: s.token.low)
        XCTAssertEqual(refusal { _ = try r.resume(s.id, token: wrong, uid: 1000, connection: 2) }, .badToken)
        XCTAssertEqual(refusal { _ = try r.resume(s.id, token: s.token, uid: 0, connection: 2) }, .wrongUser, "not even root")
        XCTAssertEqual(refusal { _ = try r.resume(s.id &+ 1, token: s.token, uid: 1000, connection: 2) }, .noSuchSession)
        XCTAssertTrue(try r.resume(s.id, token: s.token, uid: 1000, connection: 2) === s)
        XCTAssertEqual(s.connections, [1, 2], "several connections share a session")
    }

    func testGracePeriod() throws {
        let r = SessionRegistry()
        let s = r.open(uid: 5, connection: 1)
        XCTAssertTrue(r.detach(1, from: s, now: 1_000))
        XCTAssertNil(r.expire(s.id, now: 1_500, grace: 1_000), "still within grace")
        _ = try r.resume(s.id, token: s.token, uid: 5, connection: 2)
        XCTAssertNil(r.expire(s.id, now: 5_000, grace: 1_000), "a connection came back")
        XCTAssertTrue(r.detach(2, from: s, now: 6_000))
        XCTAssertTrue(r.expire(s.id, now: 7_000, grace: 1_000) === s)
        XCTAssertNil(r.session(s.id))
    }

    func testTokensDiffer() {
        let r = SessionRegistry()
        let a = r.open(uid: 1, connection: 1)
        let b = r.open(uid: 1, connection: 2)
        XCTAssertNotEqual(a.token, b.token)
        XCTAssertNotEqual(a.id, b.id)
    }
}

final class PrivateChannelTests: XCTestCase {
    func channel(size: Int) -> PrivateChannel<MessageRing<Int>> {
        PrivateChannel(id: 1 << 63, name: "p", epoch: 9, session: 7, owner: 3, size: size)
    }

    func testSizeBoundsUnacknowledgedExactly() throws {
        let c = channel(size: 3)
        for i in 1...3 { XCTAssertEqual(try c.push(i), UInt64(i)) }
        XCTAssertEqual(c.unacknowledged, 3)
        XCTAssertThrowsError(try c.push(4)) { XCTAssertEqual(($0 as? ChannelRefusal)?.code, .channelFull) }
        XCTAssertTrue(c.isFull)
        XCTAssertEqual(c.ring.count, 0, "pending data dropped, memory freed")
        guard case .full = c.read(at: 1) else { return XCTFail("the reader learns it is full") }
        XCTAssertThrowsError(try c.push(5)) { XCTAssertEqual(($0 as? ChannelRefusal)?.code, .channelFull) }
    }

    func testAcknowledgementsMakeRoomAndSetTheResumePoint() throws {
        let c = channel(size: 2)
        _ = try c.push(1)
        _ = try c.push(2)
        try c.acknowledge(through: 1)
        XCTAssertEqual(c.firstUnacknowledged, 2)
        _ = try c.push(3)
        guard case .message(2) = c.read(at: 2), case .message(3) = c.read(at: 3) else { return XCTFail() }
        try c.acknowledge(through: 0)
        XCTAssertEqual(c.firstUnacknowledged, 2, "acknowledgements are cumulative; less is a no-op")
        XCTAssertThrowsError(try c.acknowledge(through: 9))
        try c.acknowledge(through: 3)
        XCTAssertEqual(c.unacknowledged, 0)
        c.close()
        guard case .closed(lastSequence: 3) = c.read(at: 4) else { return XCTFail() }
        XCTAssertThrowsError(try c.push(4)) { XCTAssertEqual(($0 as? ChannelRefusal)?.code, .channelClosed) }
    }
}

final class UnlimitedChannelTests: XCTestCase {
    func testPullsOnlyWhenTheReaderIsReadyAndAnswersOnlyWhatWasAsked() throws {
        let c = PrivateChannel<MessageRing<String>>(id: 1 << 63, name: "u", epoch: 1, session: 2, owner: 3, size: 500, unlimited: true)
        XCTAssertEqual(c.size, 1)
        XCTAssertNil(c.pullToAsk(), "no reader, no pull")
        XCTAssertThrowsError(try c.push("x")) { XCTAssertEqual(($0 as? ChannelRefusal)?.code, .pullNotRequested) }
        c.reader = 9
        let first = try XCTUnwrap(c.pullToAsk())
        XCTAssertNil(c.pullToAsk(), "one pull outstanding at most")
        XCTAssertThrowsError(try c.answer(first + 1, with: "wrong")) { XCTAssertEqual(($0 as? ChannelRefusal)?.code, .pullNotRequested) }
        XCTAssertEqual(try c.answer(first, with: "one"), 1)
        XCTAssertThrowsError(try c.answer(first, with: "again"))
        XCTAssertNil(c.pullToAsk(), "the reader has not acknowledged message 1")
        try c.acknowledge(through: 1)
        let second = try XCTUnwrap(c.pullToAsk())
        XCTAssertNotEqual(second, first)
        c.close()
        XCTAssertThrowsError(try c.answer(second, with: "late"))
    }

    /// A pull that comes due while the channel has no producer (it waits for ADOPT after a
    /// restart) is asked of the producer that takes it; one asked of a producer whose connection
    /// went is asked again of the next, with the same id; the same owner is asked once.
    func testAPullIsAskedOfWhoeverOwnsTheChannel() throws {
        let c = PrivateChannel<MessageRing<String>>(id: 1 << 63, name: "u", epoch: 1, session: 2, owner: 0, size: 1, unlimited: true)
        c.reader = 9
        XCTAssertNil(c.pullToAsk(), "nobody to ask")
        XCTAssertNil(c.outstandingPull, "no pull comes due without a producer")
        c.transfer(to: 4)
        let first = try XCTUnwrap(c.pullToAsk())
        XCTAssertNil(c.pullToAsk(), "asked of this owner already")
        c.transfer(to: 0)
        XCTAssertNil(c.pullToAsk())
        c.transfer(to: 5)
        XCTAssertEqual(c.pullToAsk(), first, "the new owner is asked the same pull: the answer may have been lost")
        XCTAssertNil(c.pullToAsk())
        XCTAssertEqual(try c.answer(first, with: "one"), 1)
        try c.acknowledge(through: 1)
        let second = try XCTUnwrap(c.pullToAsk())
        XCTAssertNotEqual(second, first)
    }

    /// A restored outstanding pull is asked again of a producer that takes the channel back, not of
    /// the connection it was asked of.
    func testARestoredPullIsAskedAgain() throws {
        let c = PrivateChannel<MessageRing<String>>(id: 1 << 63, name: "u", epoch: 1, session: 2, owner: 0, size: 1, unlimited: true)
        c.restore(first: 1, count: 2, { ["a", "b"][$0] }, acknowledged: 2, closed: false, full: false, outstandingPull: 7, nextPull: 8)
        c.reader = 9
        c.transfer(to: 4)
        XCTAssertEqual(c.pullToAsk(), 7)
        XCTAssertNil(c.pullToAsk())
        // Restored with the connection that was asked (a planned restart carries it): not again.
        let carried = PrivateChannel<MessageRing<String>>(id: 1 << 63, name: "u", epoch: 1, session: 2, owner: 4, size: 1, unlimited: true)
        carried.restore(first: 1, count: 2, { ["a", "b"][$0] }, acknowledged: 2, closed: false, full: false, outstandingPull: 7, nextPull: 8)
        carried.reader = 9
        XCTAssertNil(carried.pullToAsk())
        carried.transfer(to: 0)
        carried.transfer(to: 5)
        XCTAssertEqual(carried.pullToAsk(), 7, "its connection was not carried: the producer that adopts it is asked")
    }
}
