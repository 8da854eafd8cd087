import Comet
import XCTest

/// FULL only for readers that cannot keep up, and the Swift client's pipelined pushes.
final class KeepUpTests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws {
        // The release daemon when built (make test builds it): the test is about keeping up.
        daemon = try Daemon(executable: Daemon.releaseDaemon)
    }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    func connect() async throws -> CometClient { try await CometClient.connect(to: daemon.socketPath) }

    /// A `for try await` reader keeping up with a producer that publishes 1,000,000 messages in a
    /// tight loop into the default ring (1000) gets every message, in order, and no FULL.
    func testReaderKeepingUpWithATightLoopGetsEverythingAtTheDefaultRing() async throws {
        let total = 1_000_000
        let producerClient = try await connect()
        let producer = try await producerClient.create("keepup")  // default ring: 1000
        let readerClient = try await connect()
        let subscription = try await readerClient.subscribe("keepup")
        let reading = readInOrder(subscription, total: total)
        let payload = [UInt8](repeating: 0x6B, count: 64)
        for _ in 0..<total { await producer.publish(payload) }
        let last = try await producer.flush()
        XCTAssertEqual(last, UInt64(total), "every push is in")
        let read = await reading.value
        XCTAssertNil(read.error, "no FULL (or any end) for a reader that keeps up")
        XCTAssertEqual(read.received, UInt64(total))
        XCTAssertTrue(read.inOrder)
        await readerClient.close()
        await producerClient.close()
    }

    /// `push(contentsOf:)` pipelines and returns the last sequence number; `publish` + `flush`
    /// report a refusal at the flush.
    func testPipelinedPushesAndRefusalAtFlush() async throws {
        let client = try await connect()
        let producer = try await client.create("pipelined", size: 10)
        let reader = try await connect()
        let subscription = try await reader.subscribe("pipelined")
        let last = try await producer.push(contentsOf: AsyncStream<[UInt8]> { continuation in
            for i in 1...5000 { continuation.yield(Array("m\(i)".utf8)) }
            continuation.finish()
        })
        XCTAssertEqual(last, 5000)
        var got: [UInt64] = []
        for try await message in subscription {
            got.append(message.sequence)
            if got.count == 5000 { break }
        }
        XCTAssertEqual(got, Array(1...5000), "a ring of 10, yet the reader got all 5000")

        try await producer.close()
        await producer.publish(Array("after close".utf8))
        do {
            try await producer.flush()
            XCTFail("a push to a closed channel is refused at the flush")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .noSuchChannel)
        }
        await reader.close()
        await client.close()
    }

    /// `cancel()` ends a running `for try await` promptly, from another task.
    func testCancelEndsARunningIteration() async throws {
        let producerClient = try await connect()
        let producer = try await producerClient.create("cancelled")
        let readerClient = try await connect()
        let subscription = try await readerClient.subscribe("cancelled")
        try await producer.push("one")
        let reading = Task { () -> (Int, Error?) in
            var count = 0
            do {
                for try await _ in subscription { count += 1 }
                return (count, nil)
            } catch {
                return (count, error)
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        let started = ContinuousClock.now
        try await subscription.cancel()
        let (count, error) = await reading.value
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2), "the loop ended promptly")
        XCTAssertEqual(count, 1)
        XCTAssertNil(error, "cancel ends the loop normally")
        XCTAssertNil(subscription.info.closedAfter, "not closed: cancelled")
        let channels = try await producerClient.channels()
        XCTAssertEqual(channels.first { $0.name == "cancelled" }?.subscribers, 0, "unsubscribed in the daemon too")
        await readerClient.close()
        await producerClient.close()
    }
}
