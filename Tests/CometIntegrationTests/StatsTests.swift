import Comet
import Foundation
import XCTest

/// STATS and what shows it: counters that match a scripted run, OpenMetrics that a real parser
/// reads, `comet monitor`.
final class StatsTests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws {
        // A small reader queue and a short grace: the stalled reader gets FULL quickly.
        daemon = try Daemon(arguments: ["--reader-queue", "512K", "--reader-grace", "0.2"])
    }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    func connect() async throws -> CometClient { try await CometClient.connect(to: daemon.socketPath) }

    func testCountersMatchAScriptedRun() async throws {
        let producerClient = try await connect()
        let producer = try await producerClient.create("counted", size: 100)
        let reader = try await connect()
        let keeping = try await reader.subscribe("counted")
        // A reader that never reads: it falls behind and gets FULL.
        let stalled = try RawConnection(daemon.socketPath, receiveBuffer: 4096)
        _ = try stalled.hello()
        _ = try stalled.expectOK(stalled.send(.subscribe(name: "counted", position: .next, epoch: 0, wait: false)))
        let payload = [UInt8](repeating: 0x61, count: 1000)
        let total = 3000
        let readAll = Task { () -> Int in
            var n = 0
            for try await _ in keeping {
                n += 1
                if n == total { break }
            }
            return n
        }
        for _ in 0..<total { await producer.publish(payload) }
        try await producer.flush()
        let kept = try await readAll.value
        XCTAssertEqual(kept, total)
        var stalledGot = 0
        var sawFull = false
        while let frame = try stalled.read() {
            if case .message = frame { stalledGot += 1 }
            if case .full = frame { sawFull = true; break }
        }
        XCTAssertTrue(sawFull, "the stalled reader got FULL")
        let stats = try await producerClient.stats()
        let counted = try XCTUnwrap(stats.channelStats.first { $0.name == "counted" })
        XCTAssertEqual(counted.pushed, UInt64(total))
        XCTAssertEqual(counted.bytes, UInt64(total * payload.count))
        XCTAssertEqual(counted.fullEvents, 1)
        XCTAssertEqual(counted.delivered, UInt64(total + stalledGot), "every message written to each reader, counted once")
        XCTAssertEqual(stats.version, "0.9.2")
        XCTAssertGreaterThanOrEqual(stats.connectionsAccepted, 3)
        let mine = try XCTUnwrap(stats.users.first { $0.uid == getuid() })
        XCTAssertEqual(mine.resources.first { $0.resource == "channels" }?.used, 1)
        await reader.close()
        await producerClient.close()
    }

    func testOpenMetricsParsesWithARealParser() throws {
        let producer = Process()
        producer.executableURL = Daemon.executable("comet")
        producer.arguments = ["push", "metered", "a", "b", "--linger", "30", "-s", daemon.socketPath]
        try producer.run()
        defer { producer.terminate() }
        try waitUntilChannel("metered")
        let metrics = try runTool("comet", ["stats", "--openmetrics", "-s", daemon.socketPath])
        XCTAssertEqual(metrics.status, 0, metrics.stderr)
        let file = daemon.directory.appendingPathComponent("metrics.txt")
        try metrics.stdout.write(to: file, atomically: true, encoding: .utf8)
        let script = """
            import sys
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
            families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
            pushed = [s for s in families['comet_channel_pushed_messages'].samples if s.labels.get('channel') == 'metered']
            assert pushed and pushed[0].value == 2, pushed
            assert families['comet_connections'].type == 'gauge'
            assert families['comet_channel_full_events'].type == 'counter'
            print(len(families))
            """
        let parsed = try runTool("/usr/bin/python3", ["-c", script, file.path], absolute: true)
        XCTAssertEqual(parsed.status, 0, parsed.stderr)
        XCTAssertGreaterThan(Int(parsed.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, 10)
        let json = try runTool("comet", ["stats", "--json", "-s", daemon.socketPath])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        XCTAssertNotNil(object["site_channels"] as? [[String: Any]])
    }

    func testMonitorShowsLiveTraffic() async throws {
        let client = try await connect()
        let producer = try await client.create("watched")
        try await producer.push("before")
        let monitor = Process()
        monitor.executableURL = Daemon.executable("comet")
        monitor.arguments = ["monitor", "-s", daemon.socketPath]
        let out = Pipe()
        monitor.standardOutput = out
        try monitor.run()
        for _ in 0..<200 {
            if try await client.channels().first(where: { $0.name == "watched" })?.subscribers == 1 { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        try await producer.push("live one")
        try await producer.close()  // the only channel watched ends: monitor ends too
        monitor.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(text, "watched\t2\tlive one\nwatched\t-\tclosed\n")
        await client.close()
    }

    func waitUntilChannel(_ name: String) throws {
        for _ in 0..<200 {
            if try runTool("comet", ["channels", "-s", daemon.socketPath]).stdout.contains(name) { return }
            usleep(25_000)
        }
        throw DaemonFailure("channel \(name) never appeared")
    }
}
