import CometFederation
import XCTest

final class ImportOrderTests: XCTestCase {
    func testInOrderAndDuplicates() {
        var order = ImportOrder()
        XCTAssertEqual(order.admit(1, after: 0), .take)
        XCTAssertEqual(order.admit(2, after: 1), .take)
        XCTAssertEqual(order.admit(2, after: 2), .duplicate)
        XCTAssertEqual(order.admit(1, after: 2), .duplicate)
        XCTAssertFalse(order.ignoresEvents)
    }

    /// A loss in transit: the fresh read delivers what was missing, and nothing is passed across a gap.
    func testAJumpIsReadAgainAndTheFreshReadFillsIt() {
        var order = ImportOrder()
        XCTAssertEqual(order.admit(11, after: 10), .take)
        XCTAssertEqual(order.admit(15, after: 11), .refetch)
        XCTAssertTrue(order.ignoresEvents)
        // What the old read still delivers is ignored, in order or not.
        XCTAssertEqual(order.admit(16, after: 11), .ignore)
        XCTAssertEqual(order.admit(12, after: 11), .ignore)
        order.restarted()
        XCTAssertFalse(order.ignoresEvents)
        // The fresh read starts at the stream's start: duplicates, then the missing ones.
        XCTAssertEqual(order.admit(1, after: 11), .duplicate)
        XCTAssertEqual(order.admit(11, after: 11), .duplicate)
        XCTAssertEqual(order.admit(12, after: 11), .take)
        // Reading again: a later jump is questioned again, not believed.
        XCTAssertEqual(order.admit(20, after: 12), .refetch)
    }

    /// A gap the stream really has: shown again by the fresh read, it is passed on once.
    func testAJumpShownAgainIsBelieved() {
        var order = ImportOrder()
        XCTAssertEqual(order.admit(5, after: 3), .refetch)
        order.restarted()
        XCTAssertEqual(order.admit(2, after: 3), .duplicate)
        XCTAssertEqual(order.admit(5, after: 3), .takeAcrossGap)
        XCTAssertEqual(order.admit(6, after: 5), .take)
        XCTAssertEqual(order.admit(9, after: 6), .refetch)
    }

    /// A subscription made again for another reason (the link's own) changes nothing while reading.
    func testARestartWhileReadingChangesNothing() {
        var order = ImportOrder()
        order.restarted()
        XCTAssertEqual(order.admit(1, after: 0), .take)
        order.restarted()
        XCTAssertEqual(order.admit(3, after: 1), .refetch)
    }
}
