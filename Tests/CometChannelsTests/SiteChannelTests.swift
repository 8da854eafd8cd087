import CometChannels
import XCTest

final class SiteChannelTests: XCTestCase {
    func channel(size: Int = 5, pushed: Int = 0) throws -> SiteChannel<MessageRing<Int>> {
        let c = SiteChannel<MessageRing<Int>>(id: 1, name: "c", epoch: 42, size: size, owner: 9)
        for i in 0..<pushed { try c.push(i + 1) }
        return c
    }

    func testPositionsOnAFreshChannel() throws {
        let c = try channel()
        XCTAssertEqual(try c.start(at: .next), .at(1))
        XCTAssertEqual(try c.start(at: .oldest), .at(1))
        XCTAssertEqual(try c.start(at: .last(3)), .at(1))
        XCTAssertEqual(try c.start(at: .from(1)), .at(1))
        XCTAssertThrowsError(try c.start(at: .from(2))) { XCTAssertEqual(($0 as? ChannelRefusal)?.code, .positionAhead) }
        XCTAssertThrowsError(try c.start(at: .from(0))) { XCTAssertEqual(($0 as? ChannelRefusal)?.code, .invalidPosition) }
    }

    func testPositionsAfterEviction() throws {
        let c = try channel(size: 5, pushed: 8)  // holds 4...8
        XCTAssertEqual(try c.start(at: .next), .at(9))
        XCTAssertEqual(try c.start(at: .oldest), .at(4))
        XCTAssertEqual(try c.start(at: .from(6)), .at(6))
        XCTAssertEqual(try c.start(at: .from(9)), .at(9))
        XCTAssertEqual(try c.start(at: .from(3)), .full(firstAvailable: 4))
        XCTAssertEqual(try c.start(at: .from(1)), .full(firstAvailable: 4))
    }

    func testLastKIsExactlyTheKMostRecent() throws {
        let c = try channel(size: 5, pushed: 8)
        XCTAssertEqual(try c.start(at: .last(0)), .at(9), "last 0 delivers nothing old")
        XCTAssertEqual(try c.start(at: .last(1)), .at(8))
        XCTAssertEqual(try c.start(at: .last(3)), .at(6))
        XCTAssertEqual(try c.start(at: .last(5)), .at(4))
        XCTAssertEqual(try c.start(at: .last(50)), .at(4), "fewer buffered than asked: all of them")
        // Reading from the start position yields exactly k messages.
        guard case .at(var s) = try c.start(at: .last(3)) else { return XCTFail() }
        var got: [Int] = []
        while case .message(let m) = c.read(at: s) {
            got.append(m)
            s += 1
        }
        XCTAssertEqual(got, [6, 7, 8])
    }

    func testReadReportsCaughtUpFullAndClosed() throws {
        let c = try channel(size: 3, pushed: 2)
        guard case .message(1) = c.read(at: 1) else { return XCTFail() }
        guard case .caughtUp = c.read(at: 3) else { return XCTFail() }
        try c.push(3)
        try c.push(4)  // evicts 1
        guard case .full(firstAvailable: 2) = c.read(at: 1) else { return XCTFail("a reader at 1 fell behind") }
        c.close()
        guard case .message(4) = c.read(at: 4) else { return XCTFail("buffered messages stay readable after close") }
        guard case .closed(lastSequence: 4) = c.read(at: 5) else { return XCTFail() }
        XCTAssertThrowsError(try c.push(5)) { XCTAssertEqual(($0 as? ChannelRefusal)?.code, .channelClosed) }
    }

    func testReadersAreCountedNotCopied() throws {
        let c = try channel()
        c.addReader(1)
        c.addReader(1)
        c.addReader(2)
        XCTAssertEqual(c.subscriberCount, 3)
        XCTAssertEqual(c.readers, [1: 2, 2: 1])
        c.removeReader(1)
        c.removeReader(2)
        c.removeReader(3)
        XCTAssertEqual(c.subscriberCount, 1)
        XCTAssertEqual(c.readers, [1: 1])
    }
}

final class NewestChannelTests: XCTestCase {
    func testKeepsOnlyTheLatestAndReadersSkipToIt() throws {
        let c = SiteChannel<MessageRing<Int>>(id: 1, name: "n", epoch: 1, size: 500, owner: 1, newestOnly: true)
        XCTAssertEqual(c.size, 1)
        XCTAssertEqual(try c.start(at: .next), .at(1), "no value yet: wait for the first")
        for i in 1...10 { try c.push(i) }
        XCTAssertEqual(c.ring.count, 1)
        for position in [Position.next, .oldest, .last(3), .from(2)] {
            XCTAssertEqual(try c.start(at: position), .at(10), "\(position): the current value at once, never full")
        }
        XCTAssertEqual(try c.start(at: .last(0)), .at(11))
        XCTAssertEqual(try c.start(at: .from(11)), .at(11))
        XCTAssertThrowsError(try c.start(at: .from(12)))
        // A reader at 3 that fell behind catches up to the newest instead of getting full.
        XCTAssertEqual(c.catchUp(3), 10)
        guard case .message(10) = c.read(at: c.catchUp(3)) else { return XCTFail() }
        XCTAssertEqual(c.catchUp(11), 11)
    }

    func testBufferedChannelsDoNotSkip() throws {
        let c = SiteChannel<MessageRing<Int>>(id: 1, name: "b", epoch: 1, size: 2, owner: 1)
        for i in 1...5 { try c.push(i) }
        XCTAssertEqual(c.catchUp(1), 1)
        guard case .full(firstAvailable: 4) = c.read(at: 1) else { return XCTFail() }
    }

    func testRoomAboveTheSlowestProtectedReader() throws {
        let channel = SiteChannel<MessageRing<Int>>(id: 1, name: "r", epoch: 1, size: 4, owner: 1)
        XCTAssertEqual(channel.room(above: channel.protectedFloor), Int.max, "no reader: nothing to protect")
        channel.addReader(7, at: 1)
        XCTAssertEqual(channel.protectedFloor, 1)
        XCTAssertEqual(channel.room(above: 1), 4, "an empty ring: room for its size")
        try channel.push(contentsOf: [1, 2, 3])
        XCTAssertEqual(channel.room(above: 1), 1, "the reader still needs 1...3")
        XCTAssertEqual(channel.room(above: 3), 3)
        XCTAssertEqual(channel.room(above: 4), 4, "a reader at the head: the whole ring")
        let newest = SiteChannel<MessageRing<Int>>(id: 2, name: "n", epoch: 1, size: 1, owner: 1, newestOnly: true)
        newest.addReader(7, at: 1)
        XCTAssertEqual(newest.room(above: 1), Int.max, "a newest channel evicts by design")
    }
}
