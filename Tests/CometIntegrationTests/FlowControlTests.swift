import Comet
import CometWire
import Foundation
import NIOCore
import XCTest

/// docs/FLOW.md against the release daemon, with the attacks of issue 18 run as uid 4242: answers
/// that fill a socket never stop a connection (or the daemon), and a reader of another user never
/// holds a producer. Timings are printed as measured; the assertions are about progress, with
/// bounds far above what a healthy daemon needs.
final class FlowControlTests: XCTestCase {
    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to run attacks as another uid") }
    }

    /// 4096 channels with 255-byte names: LIST paged to the end (twice), PING after it, and a new
    /// connection's HELLO are all answered (LIST_FROM after a full page once hung the daemon).
    func testLongNamesListIsPagedToTheEndAndTheDaemonGoesOn() throws {
        let daemon = try Daemon(arguments: ["--max-memory", "256M"], executable: Daemon.releaseDaemon)
        defer { daemon.stop() }
        let control = try ControlClient(daemon)
        let result = try Hostile.run(daemon, "long-names-list", ["4096"])
        XCTAssertEqual(result["created"] as? Int, 4096, "\(result)")
        XCTAssertEqual(result["listed"] as? Int, 2 * 4096, "every entry, twice: \(result)")
        XCTAssertGreaterThanOrEqual(result["pages"] as? Int ?? 0, 4, "\(result)")
        let worst = result["worst_answer_ms"] as? Double ?? .infinity
        let hello = result["new_hello_ms"] as? Double ?? .infinity
        XCTAssertLessThan(worst, 2000, "\(result)")
        XCTAssertLessThan(hello, 2000, "\(result)")
        let (roundTrip, _) = control.finish()
        print("measured: LIST pages and PING worst \(Int(worst)) ms, new HELLO \(Int(hello)) ms, control round trip \(Int(roundTrip * 1000)) ms")
        XCTAssertTrue(daemon.process.isRunning, daemon.log)
    }

    /// 10,000 connections, each with its session: SESSIONS paged to the end (twice), PING, and a
    /// new connection's HELLO are answered.
    func testSessionsWithTenThousandConnectionsOpen() throws {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        guard limit.rlim_max >= 12_000 else { throw XCTSkip("needs 12,000 descriptors (hard limit \(limit.rlim_max))") }
        let daemon = try Daemon(
            arguments: ["--user-quota", "connections=12000", "--user-quota", "sessions=12000", "--limit", "connections=16000"],
            executable: Daemon.releaseDaemon)
        defer { daemon.stop() }
        let result = try Hostile.run(daemon, "many-sessions", ["10000"])
        XCTAssertEqual(result["connections"] as? Int, 10000, "\(result)")
        XCTAssertGreaterThanOrEqual(result["sessions_seen"] as? Int ?? 0, 2 * 10001, "\(result)")
        let worst = result["worst_answer_ms"] as? Double ?? .infinity
        let hello = result["new_hello_ms"] as? Double ?? .infinity
        XCTAssertLessThan(worst, 2000, "\(result)")
        XCTAssertLessThan(hello, 2000, "\(result)")
        print("measured: SESSIONS pages and PING worst \(Int(worst)) ms with 10,000 connections, new HELLO \(Int(hello)) ms")
        XCTAssertTrue(daemon.process.isRunning, daemon.log)
    }

    /// Thousands of connections sending HELLO and randomly mutated requests, then shutting their
    /// sending side: every one is answered and closed, and the daemon serves on.
    func testRandomFramesOverThousandsOfConnectionsAllEnd() throws {
        let daemon = try Daemon(arguments: ["--max-memory", "256M", "--handshake-timeout", "2"], executable: Daemon.releaseDaemon)
        defer { daemon.stop() }
        let control = try ControlClient(daemon)
        let result = try Hostile.run(daemon, "random-frames", ["3000", "18"])
        XCTAssertEqual(result["connections"] as? Int, 3000, "\(result)")
        XCTAssertEqual(result["hung"] as? Int, 0, "every connection answered and closed: \(result)")
        _ = control.finish()
        let raw = try RawConnection(daemon.socketPath)
        _ = try raw.hello()
        _ = try raw.expectOK(raw.send(.ping))
        XCTAssertTrue(daemon.process.isRunning, daemon.log)
    }

    /// Connections refused at once (over the user's connection quota) are forgotten when they
    /// close: none stays known to the daemon (each used to stay for ever — found by the simulator).
    func testRefusedConnectionsAreForgotten() throws {
        let daemon = try Daemon(arguments: ["--user-quota", "connections=2"], executable: Daemon.releaseDaemon)
        defer { daemon.stop() }
        let result = try Hostile.run(daemon, "connections", ["200", "none", "0.5"])
        XCTAssertEqual((result["opened"] as? Int ?? 0) + (result["failed"] as? Int ?? 0), 200, "\(result)")
        usleep(300_000)
        let raw = try RawConnection(daemon.socketPath)
        _ = try raw.hello()
        var body = try raw.expectOK(raw.send(.stats))
        let stats = try StatsReply(from: &body)
        XCTAssertGreaterThanOrEqual(stats.connectionsRefused, 198)
        XCTAssertEqual(stats.connections, 1, "only this connection is known once the refused ones closed")
    }

    /// Subscriptions of another user that never read, renewed every 0.3 s, do not hold root's
    /// producer: with a reader grace of 5 s, no push waits anywhere near it, the producer's own
    /// reader gets everything, and the other user's readers end with FULL instead.
    func testReadersOfAnotherUserNeverHoldTheProducer() throws {
        let daemon = try Daemon(arguments: ["--reader-grace", "5"], executable: Daemon.releaseDaemon)
        defer { daemon.stop() }
        let producer = try RawConnection(daemon.socketPath)
        _ = try producer.hello()
        var created = try producer.expectOK(producer.send(.create(name: "held", kind: .buffered, size: 100)))
        let channel = try CreateReply(from: &created).channel
        let reader = try RawConnection(daemon.socketPath)
        _ = try reader.hello()
        _ = try reader.expectOK(reader.send(.subscribe(name: "held", position: .next, epoch: 0, wait: false)))
        let attack = Thread { _ = try? Hostile.run(daemon, "slow-readers", ["held", "3", "8"]) }
        attack.start()
        sleep(1)
        let payload = ByteBuffer(repeating: 0x61, count: 4096)
        var longest: TimeInterval = 0
        var read: UInt64 = 0
        for _ in 0..<300 {
            let start = Date()
            let id = producer.send(.pushBatch(channel: channel, payloads: MessageBatch(Array(repeating: payload, count: 16))))
            _ = try producer.expectOK(id)
            longest = max(longest, Date().timeIntervalSince(start))
            // The producer's own reader keeps up.
            while read < 4800, let frame = try reader.read(timeout: 5_000) {
                if case .message(_, let sequence, _) = frame {
                    XCTAssertEqual(sequence, read + 1)
                    read = sequence
                    if read % 16 == 0 { break }
                } else {
                    XCTFail("the root reader got \(frame)")
                    break
                }
            }
        }
        XCTAssertEqual(read, 4800)
        print("measured: longest push wait \(Int(longest * 1000)) ms beside 3 non-reading subscriptions of uid 4242 (reader grace 5 s)")
        XCTAssertLessThan(longest, 2.5, "a reader of another user held the producer")
    }
}
