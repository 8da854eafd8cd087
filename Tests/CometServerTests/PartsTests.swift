import XCTest

#if canImport(Glibc)
import Glibc
#endif

import CometState
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

/// Ring tickets (docs/PROTOCOL.md §6.23): once, by their uid; still redeemable after their
/// subscription ended, and for `MappedRings.lingering` after their connection closed; not after a
/// detach or a newer ticket.
final class MappedRingTicketTests: XCTestCase {
    func ring() -> RingFile {
        let meta = RingMeta(
            kind: .buffered, id: 1, name: "t", epoch: 1, capacity: 8, creator: PeerImage(pid: 1, uid: 0, gid: 0), tokenHigh: 0, tokenLow: 0)
        return try! ByteRing(meta, overhead: 48, backing: .heap).file
    }

    func testTicketsAreRedeemedOnceByTheirUserEvenAfterTheirSubscriptionEnded() {
        var rings = MappedRings()
        let file = ring()
        let first = rings.issue(file, uid: 1000, connection: 1, subscription: 1)
        let newer = rings.issue(file, uid: 1000, connection: 1, subscription: 1)
        XCTAssertNil(rings.redeem(first, uid: 1000, now: 0), "superseded by the subscription's newer ticket")
        XCTAssertNil(rings.redeem(newer, uid: 1001, now: 0), "another user")
        rings.ended(connection: 1, subscription: 1)
        XCTAssertTrue(rings.redeem(newer, uid: 1000, now: 0)?.file === file, "the end came before the RING: still redeemable")
        XCTAssertNil(rings.redeem(newer, uid: 1000, now: 0), "once")
        let named = rings.issue(file, uid: 1000, connection: 1, subscription: 3)
        XCTAssertEqual(rings.redeem(named, uid: 1000, now: 0)?.holder, MappedRings.Holder(connection: 1, subscription: 3), "says whose it was")
        let detached = rings.issue(file, uid: 1000, connection: 1, subscription: 2)
        rings.drop(connection: 1, subscription: 2)
        XCTAssertNil(rings.redeem(detached, uid: 1000, now: 0), "a detached subscription's ticket goes")
        XCTAssertEqual(rings.count, 0)
    }

    func testEndedSubscriptionsKeepABoundedNumberOfTicketsUntilTheirConnectionCloses() {
        var rings = MappedRings()
        let file = ring()
        var tickets: [UInt64] = []
        for subscription in UInt32(1)...20 {
            tickets.append(rings.issue(file, uid: 0, connection: 7, subscription: subscription))
            rings.ended(connection: 7, subscription: subscription)
        }
        let live = rings.issue(file, uid: 0, connection: 7, subscription: 21)
        let other = rings.issue(file, uid: 0, connection: 8, subscription: 1)
        XCTAssertEqual(rings.count, MappedRings.orphansPerConnection + 2)
        XCTAssertNil(rings.redeem(tickets[0], uid: 0, now: 0), "the oldest ended ones went")
        XCTAssertTrue(rings.redeem(tickets[19], uid: 0, now: 0)?.file === file)
        // The connection closes: its tickets linger for a while, then go.
        rings.closed(connection: 7, at: 1_000)
        XCTAssertTrue(rings.redeem(live, uid: 0, now: 1_000 + MappedRings.lingering - 1)?.file === file, "a live subscription's, just before")
        XCTAssertNil(rings.redeem(tickets[18], uid: 0, now: 1_000 + MappedRings.lingering), "an ended one's, once the time is up")
        XCTAssertTrue(rings.redeem(other, uid: 0, now: 1_000 + MappedRings.lingering)?.file === file, "another connection's tickets stay")
        XCTAssertEqual(rings.count, 0)
    }

    func testAtMostSoManyTicketsLingerAfterTheirConnectionsClosed() {
        var rings = MappedRings()
        let file = ring()
        var tickets: [UInt64] = []
        for connection in UInt64(1)...UInt64(MappedRings.lingeringMost + 10) {
            tickets.append(rings.issue(file, uid: 0, connection: connection, subscription: 1))
            rings.closed(connection: connection, at: 5)
        }
        XCTAssertEqual(rings.count, MappedRings.lingeringMost)
        XCTAssertNil(rings.redeem(tickets[9], uid: 0, now: 5), "the oldest went")
        XCTAssertTrue(rings.redeem(tickets[10], uid: 0, now: 5)?.file === file)
        XCTAssertNil(rings.redeem(tickets[11], uid: 0, now: 5 + MappedRings.lingering), "all go in time")
        XCTAssertEqual(rings.count, 0)
    }
}

/// Position pages are bounded per user; a page given back makes room for another.
final class PositionPagesTests: XCTestCase {
    func testEachUserHoldsABoundedNumberOfPages() {
        let pages = PositionPages()
        var kept: [PositionPage] = []
        for _ in 0..<PositionPages.perUser {
            guard let (page, fd) = pages.make(uid: 7, start: 1) else { return XCTFail("refused below the bound") }
            close(fd)
            kept.append(page)
        }
        XCTAssertNil(pages.make(uid: 7, start: 1), "beyond the bound: no page (the reader reports when asked instead)")
        if let (_, fd) = pages.make(uid: 8, start: 1) { close(fd) } else { XCTFail("another user is not affected") }
        kept.removeLast()
        XCTAssertEqual(pages.count(uid: 7), PositionPages.perUser - 1)
        if let (_, fd) = pages.make(uid: 7, start: 1) { close(fd) } else { XCTFail("a page given back makes room") }
    }
}

/// Finding a connection's descriptor by its socket's cookie, with real sockets.
final class SocketDescriptorsTests: XCTestCase {
    private func socketPair() -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        return (fds[0], fds[1])
    }

    func testFindsSocketsAndANumberReusedByAnotherSocket() throws {
        let index = SocketDescriptors()
        let (a, b) = socketPair()
        defer { close(b) }
        let cookieA = try XCTUnwrap(SocketCookies.cookie(ofDescriptor: a))
        XCTAssertEqual(index.descriptor(for: cookieA), a)
        XCTAssertEqual(index.descriptor(for: cookieA), a, "known now")
        // A new socket after the index knows the others.
        let (c, d) = socketPair()
        defer { close(d) }
        let cookieC = try XCTUnwrap(SocketCookies.cookie(ofDescriptor: c))
        XCTAssertEqual(index.descriptor(for: cookieC), c)
        // `a` closes without being forgotten, and its number goes to another socket.
        close(a)
        let (e, f) = socketPair()
        defer { close(e); close(f) }
        let reused = f == a ? f : e  // the lowest free number is reused (if nothing else took it)
        let cookieReused = try XCTUnwrap(SocketCookies.cookie(ofDescriptor: reused))
        XCTAssertEqual(index.descriptor(for: cookieReused), reused)
        XCTAssertNil(index.descriptor(for: cookieA), "the closed socket is gone")
        // Forgotten on close: the reused number is looked at again.
        index.forget(cookieC)
        close(c)
        let (g, h) = socketPair()
        defer { close(g); close(h) }
        let onC = h == c ? h : g
        XCTAssertEqual(index.descriptor(for: try XCTUnwrap(SocketCookies.cookie(ofDescriptor: onC))), onC)
        XCTAssertNil(SocketCookies.cookie(ofDescriptor: -1))
    }
}
