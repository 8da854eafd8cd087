import CometChannels
import XCTest

final class ChannelRegistryTests: XCTestCase {
    func registry(maxChannels: Int = 100) -> ChannelRegistry<MessageRing<Int>, String> {
        var limits = RegistryLimits()
        limits.maxChannels = maxChannels
        limits.maxSize = 10_000
        var next: UInt64 = 100
        return ChannelRegistry(limits: limits) {
            next += 1
            return next
        }
    }

    func code(_ body: () throws -> Void) -> ChannelRefusal.Code? {
        do {
            try body()
            return nil
        } catch {
            return (error as? ChannelRefusal)?.code
        }
    }

    func testCreateDefaultsSizeAndRefusesDuplicates() throws {
        let r = registry()
        let (c, _) = try r.create(name: "news", size: 0, owner: 1)
        XCTAssertEqual(c.size, 1000, "Eliom's default")
        XCTAssertEqual(c.epoch, 101)
        XCTAssertEqual(code { _ = try r.create(name: "news", size: 5, owner: 2) }, .channelExists)
        XCTAssertEqual(code { _ = try r.create(name: "big", size: 10_001, owner: 1) }, .invalidSize)
        XCTAssertTrue(r.channel(named: "news") === c)
    }

    func testNamesFollowTheGrammar() {
        let r = registry()
        for bad in ["", ".hidden", "-x", "a b", "ü", "a\u{0}", String(repeating: "a", count: 256), "x?"] {
            XCTAssertEqual(code { _ = try r.create(name: bad, size: 1, owner: 1) }, .invalidName, bad)
        }
        for good in ["a", "9", "org.example/mail:inbox@alice", "A-b_c", String(repeating: "a", count: 255)] {
            XCTAssertNil(code { _ = try r.create(name: good, size: 1, owner: 1) }, good)
        }
    }

    func testOwnershipAndClose() throws {
        let r = registry()
        let (c, _) = try r.create(name: "n", size: 2, owner: 1)
        XCTAssertEqual(code { _ = try r.owned(c.id, by: 2) }, .notOwner)
        XCTAssertEqual(code { _ = try r.owned(999, by: 1) }, .noSuchChannel)
        XCTAssertEqual(code { try r.close(c.id, by: 2) }, .notOwner)
        try r.close(c.id, by: 1)
        XCTAssertTrue(c.isClosed)
        XCTAssertNil(r.channel(named: "n"))
        XCTAssertEqual(code { try r.close(c.id, by: 1) }, .noSuchChannel)
        let (again, _) = try r.create(name: "n", size: 2, owner: 2)
        XCTAssertNotEqual(again.epoch, c.epoch, "a re-created channel has a new epoch")
        XCTAssertNotEqual(again.id, c.id, "handles are not reused")
    }

    func testCloseAllOfAnOwner() throws {
        let r = registry()
        _ = try r.create(name: "a", size: 1, owner: 1)
        _ = try r.create(name: "b", size: 1, owner: 1)
        _ = try r.create(name: "c", size: 1, owner: 2)
        let closed = r.closeAll(ownedBy: 1)
        XCTAssertEqual(Set(closed.map(\.name)), ["a", "b"])
        XCTAssertTrue(closed.allSatisfy(\.isClosed))
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r.closeEverything().map(\.name), ["c"])
        XCTAssertEqual(r.count, 0)
    }

    func testWaitersAreHandedToTheCreator() throws {
        let r = registry()
        try r.wait(for: "later", "w1")
        try r.wait(for: "later", "w2")
        try r.wait(for: "other", "w3")
        r.stopWaiting(for: "later", "w2")
        XCTAssertEqual(r.waiterCount, 2)
        XCTAssertEqual(code { try r.wait(for: "bad name", "w4") }, .invalidName)
        let (_, waiters) = try r.create(name: "later", size: 1, owner: 1)
        XCTAssertEqual(waiters, ["w1"])
        XCTAssertEqual(r.waiterCount, 1)
    }

    func testChannelLimit() throws {
        let r = registry(maxChannels: 2)
        _ = try r.create(name: "a", size: 1, owner: 1)
        _ = try r.create(name: "b", size: 1, owner: 1)
        XCTAssertEqual(code { _ = try r.create(name: "c", size: 1, owner: 1) }, .limitExceeded)
    }
}
