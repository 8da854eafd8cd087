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

    func testForEachBorrowsInOrderAcrossTheWrapAndStopsWhenAsked() {
        var ring = MessageRing<String>(capacity: 4)
        for i in 1...6 { ring.append("m\(i)") }  // holds 3...6, wrapped
        var seen: [String] = []
        XCTAssertEqual(ring.forEach(from: 3) { seen.append(copy $0); return true }, 7)
        XCTAssertEqual(seen, ["m3", "m4", "m5", "m6"])
        seen = []
        XCTAssertEqual(ring.forEach(from: 4) { seen.append(copy $0); return seen.count < 2 }, 5, "stops at the refused one")
        XCTAssertEqual(seen, ["m4", "m5"])
        XCTAssertEqual(ring.forEach(from: 2) { _ in XCTFail("evicted"); return true }, 2, "an evicted start hands nothing")
        XCTAssertEqual(ring.forEach(from: 7) { _ in XCTFail("not yet"); return true }, 7)
    }

    func testAppendCountMakesEachInOrderAndWeighsWithoutTouchingEvicted() {
        var ring = MessageRing<String>(capacity: 3, weigh: { $0.utf8.count })
        XCTAssertEqual(ring.append(count: 5) { "x\(String(repeating: "y", count: $0))" }, 1)
        XCTAssertEqual(ring.lastSequence, 5)
        XCTAssertEqual([3, 4, 5].map { ring[$0] }, ["xyy", "xyyy", "xyyyy"])
        XCTAssertEqual(ring.bytes, 3 + 4 + 5)
        XCTAssertEqual(ring.bytesAfterAppending(weights: [10]), 4 + 5 + 10, "the oldest (3 bytes) would go")
    }
}
