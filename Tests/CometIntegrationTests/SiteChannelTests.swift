import Comet
import CometWire
import XCTest

/// Site channels end to end: producers and consumers on separate connections to a real cometd.
final class SiteChannelIntegrationTests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws {
        daemon = try Daemon()
    }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    func connect() async throws -> CometClient { try await CometClient.connect(to: daemon.socketPath) }

    /// Collects messages until the subscription ends; returns them and the error that ended it.
    func drain(_ subscription: CometSubscription, limit: Int = .max) async -> ([CometMessage], Error?) {
        var got: [CometMessage] = []
        do {
            for try await message in subscription {
                got.append(message)
                if got.count >= limit { return (got, nil) }
            }
            return (got, nil)
        } catch {
            return (got, error)
        }
    }

    func testEveryConsumerGetsEveryMessageInOrderThenClosed() async throws {
        let producerClient = try await connect()
        let producer = try await producerClient.create("news", size: 5000)
        var readers: [CometClient] = []
        var subscriptions: [CometSubscription] = []
        for _ in 0..<3 {
            let c = try await connect()
            readers.append(c)
            subscriptions.append(try await c.subscribe("news"))
        }
        let v1 = try await producer.push("first")
        XCTAssertEqual(v1, 1)
        let range = try await producer.push(batch: (2...1000).map { Array("m\($0)".utf8) })
        XCTAssertEqual(range, 2...1000)
        let v2 = try await producer.close()
        XCTAssertEqual(v2, 1000)
        for subscription in subscriptions {
            let (messages, end) = await drain(subscription)
            XCTAssertEqual(messages.map(\.sequence), Array(1...1000))
            XCTAssertEqual(messages.first?.string, "first")
            XCTAssertEqual(messages.last?.string, "m1000")
            XCTAssertNil(end, "a closed channel ends the loop normally")
            XCTAssertEqual(subscription.info.closedAfter, 1000)
        }
        for c in readers { await c.close() }
        await producerClient.close()
    }

    func testReplayPositions() async throws {
        let p = try await connect()
        let producer = try await p.create("replay", size: 5)
        try await producer.push(batch: (1...10).map { Array("\($0)".utf8) })
        let c = try await connect()

        let oldest = try await c.subscribe("replay", from: .oldest)
        XCTAssertEqual(oldest.info.nextSequence, 6)
        let v3 = await drain(oldest, limit: 5).0.map(\.string)
        XCTAssertEqual(v3, ["6", "7", "8", "9", "10"])

        let last2 = try await c.subscribe("replay", from: .last(2))
        let v4 = await drain(last2, limit: 2).0.map(\.sequence)
        XCTAssertEqual(v4, [9, 10])

        let from7 = try await c.subscribe("replay", from: .from(7), epoch: producer.epoch)
        let v5 = await drain(from7, limit: 4).0.map(\.sequence)
        XCTAssertEqual(v5, [7, 8, 9, 10])

        let evicted = try await c.subscribe("replay", from: .from(2))
        let (none, end) = await drain(evicted)
        XCTAssertEqual(none, [])
        XCTAssertEqual(end as? ChannelFull, ChannelFull(channel: "replay", firstAvailable: 6))

        do {
            _ = try await c.subscribe("replay", from: .from(12))
            XCTFail("position ahead accepted")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .positionAhead)
        }

        let next = try await c.subscribe("replay")
        try await producer.push("11")
        let v6 = await drain(next, limit: 1).0.map(\.sequence)
        XCTAssertEqual(v6, [11])
        await c.close()
        await p.close()
    }

    func testRecreatedChannelIsReportedByEpoch() async throws {
        let p = try await connect()
        let first = try await p.create("epoch")
        try await first.push("a")
        try await first.close()
        let second = try await p.create("epoch")
        XCTAssertNotEqual(first.epoch, second.epoch)
        let c = try await connect()
        do {
            _ = try await c.subscribe("epoch", from: .from(1), epoch: first.epoch)
            XCTFail("stale epoch accepted")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .epochMismatch)
        }
        let fresh = try await c.subscribe("epoch", from: .oldest, epoch: second.epoch)
        XCTAssertEqual(fresh.info.epoch, second.epoch)
        await c.close()
        await p.close()
    }

    func testWaitingSubscriptionStartsWhenTheChannelAppears() async throws {
        let c = try await connect()
        do {
            _ = try await c.subscribe("later")
            XCTFail("subscribing to a missing channel without wait succeeded")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .noSuchChannel)
        }
        let waiting = try await c.subscribe("later", wait: true)
        XCTAssertTrue(waiting.info.waiting)
        let p = try await connect()
        let producer = try await p.create("later")
        try await producer.push(batch: [Array("x".utf8), Array("y".utf8)])
        let (got, _) = await drain(waiting, limit: 2)
        XCTAssertEqual(got.map(\.sequence), [1, 2])
        XCTAssertEqual(waiting.info.epoch, producer.epoch)
        XCTAssertFalse(waiting.info.waiting)
        await c.close()
        await p.close()
    }

    func testProducerDisconnectClosesItsChannelsAfterDelivery() async throws {
        let p = try await connect()
        let producer = try await p.create("gone")
        let c = try await connect()
        let subscription = try await c.subscribe("gone")
        try await producer.push(batch: (1...50).map { _ in Array("z".utf8) })
        await p.close()
        let (got, end) = await drain(subscription)
        XCTAssertEqual(got.count, 50)
        XCTAssertNil(end)
        XCTAssertEqual(subscription.info.closedAfter, 50)
        let channels = try await c.channels()
        XCTAssertFalse(channels.contains { $0.name == "gone" }, "the name is free again")
        await c.close()
    }

    func testListShowsSizeFillReadersAndLastSequence() async throws {
        let p = try await connect()
        let producer = try await p.create("listed", size: 3)
        try await producer.push(batch: (1...5).map { _ in [0x41] })
        let c = try await connect()
        let s1 = try await c.subscribe("listed")
        let s2 = try await c.subscribe("listed", from: .oldest)
        let list1 = try await c.channels()
        let info = try XCTUnwrap(list1.first { $0.name == "listed" })
        XCTAssertEqual(info.size, 3)
        XCTAssertEqual(info.buffered, 3)
        XCTAssertEqual(info.subscribers, 2)
        XCTAssertEqual(info.lastSequence, 5)
        XCTAssertEqual(info.epoch, producer.epoch)
        try await s1.cancel()
        _ = s2
        let list2 = try await c.channels()
        let after = try XCTUnwrap(list2.first { $0.name == "listed" })
        XCTAssertEqual(after.subscribers, 1)
        await c.close()
        await p.close()
    }

    func testProduceFromAnAsyncSequenceClosesAtItsEnd() async throws {
        let c = try await connect()
        let subscription = try await c.subscribe("stream", wait: true)
        let p = try await connect()
        let source = AsyncStream<[UInt8]> { continuation in
            for i in 1...300 { continuation.yield(Array("s\(i)".utf8)) }
            continuation.finish()
        }
        let last = try await p.produce("stream", from: source)
        XCTAssertEqual(last, 300)
        let (got, end) = await drain(subscription)
        XCTAssertEqual(got.map(\.string), (1...300).map { "s\($0)" })
        XCTAssertNil(end)
        XCTAssertEqual(subscription.info.closedAfter, 300)
        await c.close()
        await p.close()
    }

    func testPushErrors() async throws {
        let p = try await connect()
        do {
            _ = try await p.create("bad name")
            XCTFail()
        } catch let error as CometError {
            XCTAssertEqual(error.code, .invalidName)
        }
        let producer = try await p.create("dup")
        do {
            _ = try await p.create("dup")
            XCTFail()
        } catch let error as CometError {
            XCTAssertEqual(error.code, .channelExists)
        }
        try await producer.close()
        do {
            try await producer.push("after close")
            XCTFail()
        } catch let error as CometError {
            XCTAssertEqual(error.code, .noSuchChannel)
        }
        try await p.ping()
        await p.close()
    }

    func testUnreachableDaemon() async throws {
        do {
            _ = try await CometClient.connect(to: daemon.directory.appendingPathComponent("nobody.sock").path)
            XCTFail()
        } catch let error as ConnectionError {
            XCTAssertEqual(error.kind, .unreachable)
        }
    }
}

extension SiteChannelIntegrationTests {
    func testLargestPayloadPassesAndALargerOneIsRefusedByTheClient() async throws {
        let p = try await connect()
        let producer = try await p.create("big", size: 2)
        let c = try await connect()
        let subscription = try await c.subscribe("big")
        let largest = [UInt8](repeating: 0x5A, count: producer.maxPayloadSize)
        try await producer.push(largest)
        do {
            try await producer.push(largest + [0])
            XCTFail("oversized payload sent")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .invalidArgument)
        }
        let (got, _) = await drain(subscription, limit: 1)
        XCTAssertEqual(got.first?.payload.count, largest.count)
        try await p.ping()
        await p.close()
        await c.close()
    }
}

extension SiteChannelIntegrationTests {
    func testNewestChannelConflatesAndNeverOverflows() async throws {
        let p = try await connect()
        let temperature = try await p.createNewest("temperature")
        let early = try await connect()
        let waiting = try await early.subscribe("temperature")
        try await temperature.push("20")
        let first = await drain(waiting, limit: 1)
        XCTAssertEqual(first.0.map(\.string), ["20"])

        // A reader that does not read while 5000 values go by: no FULL, it ends on the newest.
        let slow = try RawConnection(daemon.socketPath, receiveBuffer: 4096)
        _ = try slow.hello()
        var body = try slow.expectOK(slow.send(.subscribe(name: "temperature", position: .next, epoch: 0, wait: false)))
        let sub = try SubscribeReply(from: &body)
        XCTAssertEqual(sub.nextSequence, 1, "the current value comes at once")
        for batch in 0..<50 {
            try await temperature.push(batch: (0..<100).map { Array("\(21 + batch * 100 + $0)".utf8) })
        }
        var sequences: [UInt64] = []
        var last = ""
        while sequences.last != 5001, let frame = try slow.read() {
            switch frame {
            case .message(sub.subscription, let seq, let payload):
                sequences.append(seq)
                last = String(buffer: payload)
            case .full: XCTFail("a newest channel never overflows")
            default: continue
            }
        }
        XCTAssertEqual(sequences.first, 1)
        XCTAssertEqual(last, "5020")
        XCTAssertEqual(sequences, sequences.sorted(), "in order")
        XCTAssertLessThan(sequences.count, 5001, "values it was too slow for were skipped")

        // A late subscriber gets the current value at once.
        let late = try await connect()
        let now = try await late.subscribe("temperature")
        let current = await drain(now, limit: 1)
        XCTAssertEqual(current.0.map(\.string), ["5020"])
        let info = try await late.channels().first { $0.name == "temperature" }
        XCTAssertEqual(info?.kind, .newest)
        XCTAssertEqual(info?.size, 1)
        await early.close()
        await late.close()
        await p.close()
    }
}
