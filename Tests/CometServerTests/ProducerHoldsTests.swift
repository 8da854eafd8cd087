import NIOCore
import XCTest

@testable import CometServer

/// Who may hold a producer, and for how long, alone.
final class ProducerHoldsTests: XCTestCase {
    func testOnlyReadersOfTheProducersUIDMayHoldIt() {
        XCTAssertTrue(ProducerHolds.mayHold(readerUID: 1000, producerUID: 1000))
        XCTAssertFalse(ProducerHolds.mayHold(readerUID: 1001, producerUID: 1000))
        XCTAssertFalse(ProducerHolds.mayHold(readerUID: 0, producerUID: 1000), "not even root's readers")
        XCTAssertFalse(ProducerHolds.mayHold(readerUID: 1000, producerUID: 0))
        XCTAssertFalse(ProducerHolds.mayHold(readerUID: 1000, producerUID: nil), "relayed channels have no producer to hold")
    }

    func testAnEpisodeLastsAtMostTheGrace() {
        let holds = ProducerHolds(grace: .seconds(1))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        XCTAssertEqual(holds.wait(7, for: [3], now: start), .wait(firstWait: true))
        XCTAssertEqual(holds.waitingProducers, 1)
        XCTAssertEqual(holds.wait(7, for: [3], now: start + .milliseconds(500)), .wait(firstWait: false))
        XCTAssertEqual(holds.wait(7, for: [3], now: start + .seconds(1)), .graceOver)
        XCTAssertEqual(holds.waitingProducers, 0, "the episode ended")
        XCTAssertEqual(holds.drained(3), [], "the reader no longer holds it")
        XCTAssertEqual(holds.wait(7, for: [3], now: start + .seconds(2)), .wait(firstWait: true), "a new episode")
    }

    func testADrainingReaderReleasesItsProducersOnce() {
        let holds = ProducerHolds(grace: .seconds(1))
        let now = NIODeadline.uptimeNanoseconds(0)
        _ = holds.wait(7, for: [3, 4], now: now)
        _ = holds.wait(8, for: [3], now: now)
        XCTAssertEqual(holds.drained(3), [7, 8])
        XCTAssertEqual(holds.drained(3), [])
        XCTAssertEqual(holds.waitingByReader.keys.sorted(), [4])
        holds.end(7)
        XCTAssertTrue(holds.waitingByReader.isEmpty)
        holds.forget(8)
        XCTAssertEqual(holds.waitingProducers, 0)
    }
}
