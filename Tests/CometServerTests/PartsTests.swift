import XCTest

@testable import CometServer

/// The broker's small parts, each alone.
final class PartsTests: XCTestCase {
    func testTimeoutWaitersAreFoundBySessionAndForgotten() {
        let waiters = TimeoutWaiters()
        let a = waiters.add(session: 5, connection: 1, uid: 1000, requestID: 9, timeout: 10)
        let b = waiters.add(session: 5, connection: 2, uid: 1000, requestID: 3, timeout: 10)
        let c = waiters.add(session: 6, connection: 2, uid: 1000, requestID: 4, timeout: 10)
        XCTAssertNotEqual(a.id, b.id)
        XCTAssertEqual(waiters.waiting(on: 5), [a.id, b.id])
        XCTAssertEqual(waiters.remove(a.id)?.requestID, 9)
        XCTAssertNil(waiters.remove(a.id))
        XCTAssertEqual(waiters.waiting(on: 5), [b.id])
        _ = waiters.remove(b.id)
        XCTAssertEqual(waiters.waiting(on: 5), [])
        XCTAssertEqual(waiters.ids, [c.id])
    }

    func testMemoryIsReturnedOnlyAfterABigReleaseAndTwoQuietSweeps() {
        var trimmer = MemoryTrimmer()
        XCTAssertFalse(trimmer.sweep(memory: 100 << 20))
        trimmer.count(5000)
        XCTAssertFalse(trimmer.sweep(memory: 10 << 20), "busy: not now")
        XCTAssertFalse(trimmer.sweep(memory: 10 << 20), "one quiet sweep is not enough")
        XCTAssertTrue(trimmer.sweep(memory: 10 << 20))
        XCTAssertFalse(trimmer.sweep(memory: 10 << 20), "nothing released since")
    }

    func testPrivateHandlesHaveTheTopBitAndGoOnAfterARestore() {
        let table = PrivateChannelTable()
        XCTAssertEqual(table.nextHandle(), 1 << 63 | 1)
        XCTAssertEqual(table.nextHandle(), 1 << 63 | 2)
        table.continueNumbering(after: 40)
        XCTAssertEqual(table.nextHandle(), 1 << 63 | 40)
        table.continueNumbering(after: 5)
        XCTAssertEqual(table.nextHandle(), 1 << 63 | 41, "never back")
    }

    func testMirrorHandlesHaveBit62() {
        let links = FederationLinks()
        XCTAssertEqual(links.nextMirrorID(), 1 << 62 | 1)
        XCTAssertEqual(links.nextMirrorID(), 1 << 62 | 2)
    }
}
