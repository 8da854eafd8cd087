@testable import CometFederation
import NIOCore
import XCTest

final class ExportStateTests: XCTestCase {
    func target(size: Int, newest: Bool = false) -> ExportTarget {
        ExportTarget(name: "c", subject: "comet.c", stream: "COMET_c", storage: .memory, size: size, maxInFlight: 8, newest: newest)
    }

    func buffers(_ n: Int) -> [ByteBuffer] { (0..<n).map { ByteBuffer(string: "\($0)") } }

    func testWindowKeepsTheRingsWorthAndCountsWhatLeftItUnpublished() {
        let export = ExportState(target: target(size: 10), epoch: 7, next: 1)
        export.append(first: 1, buffers(4))
        XCTAssertEqual(export.endSequence, 5)
        export.nextToPublish = 3  // 1 and 2 published
        export.append(first: 5, buffers(10))  // 1...14: the window keeps 5...14
        XCTAssertEqual(export.firstSequence, 5)
        XCTAssertEqual(export.stats.missed, 2, "3 and 4 left before they were published")
        XCTAssertEqual(export.nextToPublish, 5)
        XCTAssertNotNil(export[14])
        XCTAssertNil(export[4])
    }

    func testDuplicateAndGappedBatches() {
        let export = ExportState(target: target(size: 100), epoch: 7, next: 1)
        export.append(first: 1, buffers(5))
        export.append(first: 3, buffers(5))  // 3...7, of which 3...5 already there
        XCTAssertEqual(export.endSequence, 8)
        export.append(first: 20, buffers(1))  // 8...19 never handed over (evicted within a batch)
        XCTAssertEqual(export.firstSequence, 20)
        XCTAssertEqual(export.stats.missed, 19, "1...19 were never published")
    }

    func testResumeAfterWhatTheStreamHolds() {
        let export = ExportState(target: target(size: 10), epoch: 7, next: 1)
        export.append(first: 1, buffers(30))  // window 21...30; nothing published: 20 missed
        XCTAssertEqual(export.stats.missed, 20)
        export.resume(after: 25)
        XCTAssertEqual(export.nextToPublish, 26)
        export.resume(after: nil)  // the stream lost everything: republish the window
        XCTAssertEqual(export.nextToPublish, 21)
        XCTAssertEqual(export.generation, 2)
    }

    func testNewestChannelsSkipWithoutCountingLoss() {
        let export = ExportState(target: target(size: 1, newest: true), epoch: 7, next: 1)
        export.append(first: 1, buffers(5))
        XCTAssertEqual(export.firstSequence, 5)
        XCTAssertEqual(export.nextToPublish, 5)
        XCTAssertEqual(export.stats.missed, 0)
    }
}

extension ExportStateTests {
    func testWindowCountsItsBytes() {
        let export = ExportState(target: target(size: 3), epoch: 7, next: 1)
        export.append(first: 1, [ByteBuffer(string: "aa"), ByteBuffer(string: "bbb")])
        XCTAssertEqual(export.bytes, 5)
        export.append(first: 3, [ByteBuffer(string: "c"), ByteBuffer(string: "dddd")])  // "aa" leaves
        XCTAssertEqual(export.bytes, 8)
        export.append(first: 10, [ByteBuffer(string: "e")])
        XCTAssertEqual(export.bytes, 1)
    }
}
