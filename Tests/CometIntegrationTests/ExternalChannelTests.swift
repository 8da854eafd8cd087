import Comet
import Foundation
import XCTest

/// External channels over two real daemons: the local one relays a channel of the upstream one.
final class ExternalChannelTests: XCTestCase {
    var upstream: Daemon!
    var local: Daemon!

    override func setUpWithError() throws {
        upstream = try Daemon()
        local = try Daemon()
    }

    override func tearDown() {
        local.stop()
        upstream.stop()
    }

    func upstreamClient() async throws -> CometClient { try await CometClient.connect(to: upstream.socketPath) }
    func localClient() async throws -> CometClient { try await CometClient.connect(to: local.socketPath) }

    func take(_ iterator: inout CometSubscription.AsyncIterator, _ count: Int) async throws -> [CometMessage] {
        var got: [CometMessage] = []
        while got.count < count, let m = try await iterator.next() { got.append(m) }
        return got
    }

    func testManyLocalReadersOneUpstreamSubscriptionSameNumbersAndEpoch() async throws {
        let p = try await upstreamClient()
        let feed = try await p.create("feed", size: 100)
        try await feed.push(batch: (1...5).map { Array("m\($0)".utf8) })
        var readers: [(CometClient, CometSubscription)] = []
        for _ in 0..<10 {
            let c = try await localClient()
            readers.append((c, try await c.subscribeExternal(address: "unix:" + upstream.socketPath, channel: "feed", history: 2)))
        }
        let upstreamView = try await p.channels().first { $0.name == "feed" }
        XCTAssertEqual(upstreamView?.subscribers, 1, "one upstream subscription for ten local readers")
        try await feed.push(batch: (6...20).map { Array("m\($0)".utf8) })
        for (_, s) in readers {
            XCTAssertEqual(s.info.epoch, feed.epoch, "the upstream epoch")
            var it = s.makeAsyncIterator()
            let got = try await take(&it, 17)
            XCTAssertEqual(got.map(\.sequence), Array(4...20), "exactly 2 of history, then live, upstream numbers")
            XCTAssertEqual(got.last?.string, "m20")
        }
        // A later reader gets the same history from the local ring.
        let late = try await localClient()
        let s = try await late.subscribeExternal(address: upstream.socketPath, channel: "feed", history: 3)
        var lateIterator = s.makeAsyncIterator()
        let lateGot = try await take(&lateIterator, 3)
        XCTAssertEqual(lateGot.map(\.sequence), [18, 19, 20])
        try await feed.close()
        while try await lateIterator.next() != nil {}
        XCTAssertEqual(s.info.closedAfter, 20, "CLOSED ends the loop")
        for (c, _) in readers { await c.close() }
        await late.close()
        await p.close()
    }

    /// A later reader asking more history than the relay holds gets what it holds (SEMANTICS.md,
    /// "External channels"): the first reader's history and everything relayed since.
    func testLaterReaderGetsWhatTheRelayHolds() async throws {
        let p = try await upstreamClient()
        let feed = try await p.create("history", size: 100)
        try await feed.push(batch: (1...10).map { Array("h\($0)".utf8) })
        let first = try await localClient()
        let one = try await first.subscribeExternal(address: upstream.socketPath, channel: "history", history: 1)
        var firstIterator = one.makeAsyncIterator()
        let firstGot = try await take(&firstIterator, 1)
        XCTAssertEqual(firstGot.map(\.sequence), [10])
        let later = try await localClient()
        let five = try await later.subscribeExternal(address: upstream.socketPath, channel: "history", history: 5)
        var laterIterator = five.makeAsyncIterator()
        let laterGot = try await take(&laterIterator, 1)
        XCTAssertEqual(laterGot.first?.sequence, 10, "what the relay fetched for the first reader")
        try await feed.push(batch: (11...14).map { Array("h\($0)".utf8) })
        let third = try await localClient()
        let three = try await third.subscribeExternal(address: upstream.socketPath, channel: "history", history: 3)
        var thirdIterator = three.makeAsyncIterator()
        let thirdGot = try await take(&thirdIterator, 3)
        XCTAssertEqual(thirdGot.map(\.sequence), [12, 13, 14], "its own 3 of what the relay holds")
        await third.close()
        await first.close()
        await later.close()
        await p.close()
    }

    func testNewestExternalChannel() async throws {
        let p = try await upstreamClient()
        let level = try await p.createNewest("level")
        try await level.push("10")
        try await level.push("20")
        let c = try await localClient()
        let s = try await c.subscribeExternal(address: upstream.socketPath, channel: "level", newest: true)
        var it = s.makeAsyncIterator()
        let now = try await take(&it, 1)
        XCTAssertEqual(now.map(\.string), ["20"])
        XCTAssertEqual(now.first?.sequence, 2)
        await c.close()
        await p.close()
    }

    func testUpstreamRestartIsAnExplicitEpochChange() async throws {
        var p = try await upstreamClient()
        let first = try await p.create("restarting")
        try await first.push("before")
        let c = try await localClient()
        let s = try await c.subscribeExternal(address: upstream.socketPath, channel: "restarting")
        var it = s.makeAsyncIterator()
        let before = try await take(&it, 1)
        XCTAssertEqual(before.map(\.string), ["before"])

        // Kill the upstream daemon and start a new one on the same socket; the channel is re-created.
        let path = upstream.socketPath
        kill(upstream.process.processIdentifier, SIGKILL)
        upstream.process.waitUntilExit()
        let restarted = Process()
        restarted.executableURL = Daemon.executable("cometd")
        restarted.arguments = ["--socket", path]
        restarted.standardError = FileHandle.nullDevice
        try restarted.run()
        defer {
            kill(restarted.processIdentifier, SIGTERM)
            restarted.waitUntilExit()
        }
        for _ in 0..<200 where !RawConnection.canConnect(path) { usleep(25_000) }
        p = try await CometClient.connect(to: path)
        let second = try await p.create("restarting")
        try await second.push("after")
        do {
            while let m = try await it.next() { XCTFail("unexpected \(m.string)") }
            XCTFail("no epoch change")
        } catch let changed as EpochChanged {
            XCTAssertEqual(changed.epoch, second.epoch)
        }
        let again = try await c.subscribeExternal(address: path, channel: "restarting")
        XCTAssertEqual(again.info.epoch, second.epoch)
        var againIterator = again.makeAsyncIterator()
        let after = try await take(&againIterator, 1)
        XCTAssertEqual(after.map(\.string), ["after"])
        await c.close()
        await p.close()
    }

    func testCutAndRestoredConnectionResumesWithoutGap() async throws {
        let proxy = try SocketProxy(path: local.directory.appendingPathComponent("proxy.sock").path, target: upstream.socketPath)
        let p = try await upstreamClient()
        let feed = try await p.create("steady", size: 1000)
        try await feed.push("m1")
        let c = try await localClient()
        let s = try await c.subscribeExternal(address: proxy.path, channel: "steady")
        var iterator = s.makeAsyncIterator()
        var got: [UInt64] = []
        if let m = try await iterator.next() { got.append(m.sequence) }
        try await feed.push(batch: (2...10).map { Array("m\($0)".utf8) })
        while got.count < 10, let m = try await iterator.next() { got.append(m.sequence) }
        proxy.cut()
        try await feed.push(batch: (11...20).map { Array("m\($0)".utf8) })
        try await Task.sleep(for: .milliseconds(800))
        try proxy.restore()
        while got.count < 20, let m = try await iterator.next() { got.append(m.sequence) }
        XCTAssertEqual(got, Array(1...20), "no gap across the cut")
        let reconnects = local.log.components(separatedBy: "reconnecting").count - 1
        XCTAssertGreaterThanOrEqual(reconnects, 1)
        XCTAssertLessThan(reconnects, 10, "back-off: the relay does not spin")
        await c.close()
        await p.close()
    }

    func testRefusals() async throws {
        let c = try await localClient()
        func code(_ address: String, _ name: String = "x") async -> ErrorCode? {
            do {
                _ = try await c.subscribeExternal(address: address, channel: name)
                return nil
            } catch let error as CometError {
                return error.code
            } catch {
                return nil
            }
        }
        let loop = await code("unix:" + local.socketPath)
        XCTAssertEqual(loop, .loopDetected)
        let unreachable = await code(local.directory.appendingPathComponent("nobody.sock").path)
        XCTAssertEqual(unreachable, .upstreamUnreachable)
        let invalid = await code("tcp:example:1")
        XCTAssertEqual(invalid, .invalidAddress)
        let missing = await code(upstream.socketPath, "missing")
        XCTAssertEqual(missing, .noSuchChannel)

        let other = try OtherVersionDaemon(path: local.directory.appendingPathComponent("v2.sock").path)
        do {
            _ = try await c.subscribeExternal(address: other.path, channel: "x")
            XCTFail("a daemon of another version was relayed")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .upstreamVersion)
            XCTAssertTrue(error.message.contains("version 1") && error.message.contains("version 2"), error.message)
        }
        let answering = try OtherVersionDaemon(path: local.directory.appendingPathComponent("v2ok.sock").path, acceptsHello: true)
        do {
            _ = try await c.subscribeExternal(address: answering.path, channel: "x")
            XCTFail("a daemon answering in another version was relayed")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .upstreamVersion)
            XCTAssertTrue(error.message.contains("protocol version 2") && error.message.contains("version 1"), error.message)
        }
        try await c.ping()
        await c.close()
    }
}

extension ExternalChannelTests {
    func testListenExternalFromTheCLI() async throws {
        let p = try await upstreamClient()
        let feed = try await p.create("cli.feed")
        try await feed.push(batch: ["a", "b", "c"].map { Array($0.utf8) })
        let r = try runTool("comet", [
            "listen", "cli.feed", "--external", "unix:" + upstream.socketPath, "--history", "2", "--count", "2", "--show-seq",
            "--socket", local.socketPath,
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "2\tb\n3\tc\n")
        let loop = try runTool("comet", ["listen", "x", "--external", local.socketPath, "--socket", local.socketPath])
        XCTAssertEqual(loop.status, 1)
        XCTAssertTrue(loop.stderr.contains("LOOP_DETECTED"), loop.stderr)
        await p.close()
    }
}
