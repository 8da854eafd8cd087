import Comet
import Foundation
import XCTest

/// Federation across a live upgrade (docs/RESTARTS.md), with FederationTests' NATS server and hosts.
extension FederationTests {
    /// A live upgrade of the exporting daemon: its producer keeps its channel, the bridge's
    /// subscription is carried over with its connection, and B's reader sees every message once,
    /// in order.
    func testLiveUpgradeOfTheExporterLosesNothing() async throws {
        let a = try host(Self.exporter)
        let b = try host(Self.importer)
        let producer = try await CometClient.connect(to: a.socketPath)
        let feed = try await producer.create("feed", size: 10_000)
        try await feed.push(batch: payloads(1...200))
        let reader = try await CometClient.connect(to: b.socketPath)
        let r = Reader(try await reader.subscribe("remote.feed", from: .oldest, wait: true))
        let before = try await r.take(200)
        XCTAssertEqual(before.map(\.sequence), Array(1...200))
        kill(a.daemon.process.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(20)
        while !a.daemon.log.contains("state taken over"), Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertTrue(a.daemon.log.contains("state taken over"), a.daemon.log)
        try await feed.push(batch: payloads(201...400))
        let after = try await r.take(200)
        XCTAssertEqual(after.map(\.sequence), Array(201...400), "no gap, no duplicate across the upgrade")
        await reader.close()
        await producer.close()
    }
}
