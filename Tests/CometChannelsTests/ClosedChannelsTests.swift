import CometChannels
import XCTest

final class ClosedChannelsTests: XCTestCase {
    private func closed(id: UInt64, name: String = "c", epoch: UInt64) -> SiteChannel<MessageRing<Int>> {
        let channel = SiteChannel<MessageRing<Int>>(id: id, name: name, epoch: epoch, size: 5, owner: 9)
        channel.close()
        return channel
    }

    func testFoundByNameAndEpochOnly() {
        let kept = ClosedChannels<MessageRing<Int>>()
        let first = closed(id: 1, epoch: 10)
        let second = closed(id: 2, epoch: 20)
        kept.keep(first, until: 100)
        kept.keep(second, until: 100)
        XCTAssertEqual(kept.count, 2)
        XCTAssertTrue(kept.channel(named: "c", epoch: 10) === first)
        XCTAssertTrue(kept.channel(named: "c", epoch: 20) === second)
        XCTAssertNil(kept.channel(named: "c", epoch: 30))
        XCTAssertNil(kept.channel(named: "d", epoch: 10))
        XCTAssertEqual(kept.channels.map(\.id), [1, 2])
    }

    func testReleasedOnlyWithoutReadersAndAfterItsTime() {
        let kept = ClosedChannels<MessageRing<Int>>()
        let channel = closed(id: 1, epoch: 10)
        kept.keep(channel, until: 100)
        channel.addReader(7, at: 1)
        XCTAssertFalse(kept.mayRelease(channel, now: 50))
        XCTAssertFalse(kept.mayRelease(channel, now: 150), "a reader still reads it")
        channel.removeReader(7)
        XCTAssertFalse(kept.mayRelease(channel, now: 50), "its time has not come")
        XCTAssertTrue(kept.mayRelease(channel, now: 100))
        // Kept again for longer: the later time counts, never the earlier.
        kept.keep(channel, until: 200)
        kept.keep(channel, until: 120)
        XCTAssertEqual(kept.count, 1)
        XCTAssertFalse(kept.mayRelease(channel, now: 150))
        XCTAssertTrue(kept.remove(channel))
        XCTAssertFalse(kept.remove(channel), "removed once")
        XCTAssertEqual(kept.count, 0)
        XCTAssertNil(kept.channel(named: "c", epoch: 10))
        XCTAssertTrue(kept.mayRelease(channel, now: 0), "a channel not kept may always go")
    }
}
