import CometChannels
import XCTest

final class ResourceAccountsTests: XCTestCase {
    func quotas() -> Quotas {
        var q = Quotas(memoryCeiling: 64 << 20, maxConnections: 400)
        q.total[.channels] = 100
        q.perUser[.channels] = 25
        return q
    }

    func testDefaultsGiveEachUserAQuarter() {
        let q = Quotas(memoryCeiling: 1 << 30, maxConnections: 1000)
        for resource in Resource.allCases {
            XCTAssertEqual(q.perUser(resource), q.total(resource) / 4, "\(resource)")
        }
        XCTAssertEqual(q.total(.connections), 1000)
    }

    func testPerUserQuotaRefusesAndChargesNothing() throws {
        let accounts = ResourceAccounts(quotas: quotas())
        for _ in 0..<25 { try accounts.charge(.channels, uid: 1000) }
        XCTAssertThrowsError(try accounts.charge(.channels, uid: 1000)) { error in
            let refusal = error as! ChannelRefusal
            XCTAssertEqual(refusal.code, .quotaExceeded)
            XCTAssertTrue(refusal.message.contains("channels"), refusal.message)
            XCTAssertTrue(refusal.message.contains("1000"), refusal.message)
        }
        XCTAssertEqual(accounts.usage(.channels, uid: 1000), 25)
        // Another user is not affected; root only meets the total.
        try accounts.charge(.channels, uid: 1001)
        for _ in 0..<74 { try accounts.charge(.channels, uid: 0) }
        XCTAssertThrowsError(try accounts.charge(.channels, uid: 0))
        XCTAssertEqual(accounts.total(.channels), 100)
    }

    func testReleaseReturnsToZeroAndForgetsTheUser() throws {
        let accounts = ResourceAccounts(quotas: quotas())
        try accounts.charge(.bufferedBytes, 1000, uid: 7)
        try accounts.charge(.subscriptions, uid: 7)
        accounts.release(.bufferedBytes, 1000, uid: 7)
        accounts.release(.subscriptions, uid: 7)
        XCTAssertNil(accounts.byUser[7])
        XCTAssertEqual(accounts.estimatedMemory, 0)
        // Releasing more than was charged never goes negative.
        accounts.release(.subscriptions, 5, uid: 7)
        XCTAssertEqual(accounts.total(.subscriptions), 0)
    }

    func testMemoryCeilingCountsEverything() throws {
        let accounts = ResourceAccounts(quotas: quotas())
        try accounts.charge(.bufferedBytes, 15 << 20, uid: 1)
        try accounts.charge(.bufferedBytes, 15 << 20, uid: 2)
        try accounts.charge(.bufferedBytes, 15 << 20, uid: 3)
        try accounts.charge(.bufferedBytes, 15 << 20, uid: 4)
        XCTAssertThrowsError(try accounts.charge(.bufferedBytes, 5 << 20, uid: 5)) { error in
            XCTAssertEqual((error as! ChannelRefusal).code, .quotaExceeded)
        }
        // 4 MiB of memory are left: 8192 subscriptions at 512 bytes fit, one more does not.
        try accounts.charge(.subscriptions, 8192, uid: 0)
        XCTAssertThrowsError(try accounts.charge(.subscriptions, uid: 0)) { error in
            XCTAssertTrue((error as! ChannelRefusal).message.contains("memory"), "\(error)")
        }
    }

    func testRingWeighsWhatItKeeps() {
        var ring = MessageRing<[UInt8]>(capacity: 3, weigh: { $0.count + 10 })
        ring.append([1, 2])
        ring.append([1, 2, 3])
        XCTAssertEqual(ring.bytes, 12 + 13)
        XCTAssertEqual(ring.bytesAfterAppending(weights: [20, 30]), 13 + 20 + 30)
        XCTAssertEqual(ring.bytesAfterAppending(weights: [1, 2, 3, 4]), 2 + 3 + 4)
        ring.append([1])
        ring.append([])
        XCTAssertEqual(ring.bytes, 13 + 11 + 10)
        ring.removeAll()
        XCTAssertEqual(ring.bytes, 0)
    }
}
