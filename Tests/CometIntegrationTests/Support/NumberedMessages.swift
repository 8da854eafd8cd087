import XCTest
import Comet

extension XCTestCase {
    /// Pushes "m1", "m2", … for the sequence numbers in `range`, `batch` at a time: a reader
    /// can check each payload against its sequence number.
    func pushNumbered(_ channel: ChannelProducer, _ range: ClosedRange<Int>, batch: Int = 500) async throws {
        var start = range.lowerBound
        while start <= range.upperBound {
            let end = min(range.upperBound, start + batch - 1)
            try await channel.push(batch: (start...end).map { Array("m\($0)".utf8) })
            start = end + 1
        }
    }
}
