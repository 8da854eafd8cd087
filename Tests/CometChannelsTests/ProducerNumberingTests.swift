import CometChannels
import XCTest

final class ProducerNumberingTests: XCTestCase {
    func testFirstNumberedPushStartsAtOneAfterWhateverCameBefore() {
        var numbering = ProducerNumbering()
        XCTAssertFalse(numbering.isNumbered)
        // Five unnumbered messages are in; number 2 first is a gap.
        XCTAssertEqual(numbering.admit(number: 2, count: 1, lastSequence: 5), .outOfOrder(expected: 1))
        XCTAssertEqual(numbering.admit(number: 1, count: 3, lastSequence: 5), .apply(skip: 0, firstSequence: 6))
        numbering.begin(at: 6)
        XCTAssertTrue(numbering.isNumbered)
        XCTAssertEqual(numbering.lastNumber(lastSequence: 8), 3)
        XCTAssertEqual(numbering.lastNumber(lastSequence: 5), 0, "nothing numbered is in yet")
    }

    func testResendsAreSkippedAndAnsweredWithTheirFirstSequence() {
        var numbering = ProducerNumbering()
        numbering.begin(at: 1)
        // Messages 1...10 are in (sequences 1...10).
        XCTAssertEqual(numbering.admit(number: 4, count: 3, lastSequence: 10), .apply(skip: 3, firstSequence: 4), "all in: skipped")
        XCTAssertEqual(numbering.admit(number: 9, count: 4, lastSequence: 10), .apply(skip: 2, firstSequence: 9), "half in")
        XCTAssertEqual(numbering.admit(number: 11, count: 2, lastSequence: 10), .apply(skip: 0, firstSequence: 11), "new")
        XCTAssertEqual(numbering.admit(number: 12, count: 1, lastSequence: 10), .outOfOrder(expected: 11))
        XCTAssertEqual(numbering.admit(number: 1, count: 1, lastSequence: 10), .apply(skip: 1, firstSequence: 1), "the very first")
    }

    func testBeginKeepsTheOriginOnceMessagesAreIn() {
        var numbering = ProducerNumbering()
        numbering.begin(at: 3)
        numbering.begin(at: 7)
        XCTAssertEqual(numbering.origin, 3, "numbers 1...4 are in at 3...6: the origin stays")
        // An origin no message reached yet (the first numbered push was refused) moves.
        var refused = ProducerNumbering()
        refused.begin(at: 3)
        refused.begin(at: 3)
        XCTAssertEqual(refused.origin, 3)
        XCTAssertEqual(refused.admit(number: 1, count: 1, lastSequence: 2), .apply(skip: 0, firstSequence: 3))
    }
}
