import CometChannels
import XCTest

final class MessageRingTests: XCTestCase {
    func testNumbersFromOneAndKeepsTheLastCapacityMessages() {
        var ring = MessageRing<String>(capacity: 3)
        XCTAssertEqual(ring.lastSequence, 0)
        XCTAssertEqual(ring.firstSequence, 1)
        XCTAssertNil(ring[1])
        for i in 1...5 { XCTAssertEqual(ring.append("m\(i)"), UInt64(i)) }
        XCTAssertEqual(ring.count, 3)
        XCTAssertEqual(ring.firstSequence, 3)
        XCTAssertEqual(ring.lastSequence, 5)
        XCTAssertNil(ring[2], "evicted")
        XCTAssertEqual([3, 4, 5].map { ring[$0] }, ["m3", "m4", "m5"])
        XCTAssertNil(ring[6], "not yet")
    }

    func testWrapsManyTimesInOrder() {
        var ring = MessageRing<UInt64>(capacity: 7)
        for i in 1...1000 as ClosedRange<UInt64> {
            ring.append(i * 10)
            for s in ring.firstSequence...ring.lastSequence { XCTAssertEqual(ring[s], s * 10) }
        }
    }

    func testRemoveAllKeepsNumbering() {
        var ring = MessageRing<Int>(capacity: 2)
        ring.append(1)
        ring.append(2)
        ring.append(3)
        ring.removeAll()
        XCTAssertEqual(ring.count, 0)
        XCTAssertEqual(ring.firstSequence, 4)
        XCTAssertEqual(ring.append(4), 4)
        XCTAssertEqual(ring[4], 4)
    }
}
