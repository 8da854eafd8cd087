import Comet
import CometSupervision
import CometWire
import Foundation
import NIOCore
import XCTest

/// Readers that map a channel's ring (SUBSCRIBE MAPPED, RING; docs/PROTOCOL.md "Mapped
/// readers"), driven by Tests/mapped/mapped_reader.py, a reader written from the documents alone.
final class MappedReaderTests: XCTestCase {
    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("mapped/mapped_reader.py").path
    }

    /// Starts the reader; its JSON result (the last line it prints) comes from `finish`.
    final class Reader: @unchecked Sendable {
        let process = Process()
        let out = Pipe()
        let err = Pipe()

        init(_ arguments: [String], uid: UInt32? = nil) throws {
            if let uid {
                // Another user reads the script from a copy it can reach (the checkout may not be).
                let directory = try Daemon.temporaryDirectory()
                chmod(directory.path, 0o755)
                let copy = directory.appendingPathComponent("mapped_reader.py")
                try FileManager.default.copyItem(atPath: MappedReaderTests.script, toPath: copy.path)
                chmod(copy.path, 0o644)
                process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
                process.arguments = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "/usr/bin/python3", copy.path] + arguments
            } else {
                process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
                process.arguments = [MappedReaderTests.script] + arguments
            }
            process.standardOutput = out
            process.standardError = err
            try process.run()
        }

        func finish(within seconds: TimeInterval = 60) throws -> [String: Any] {
            let deadline = Date().addingTimeInterval(seconds)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            guard let line = text.split(separator: "\n").last,
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            else { throw DaemonFailure("the mapped reader printed no result (status \(process.terminationStatus)): \(text)\n\(errors)") }
            return object
        }
    }

    /// Everything pushed is read from the mapping, once, in order, while the ring grows (the
    /// reader is given the ring's new file each time); a reader that starts late ends with CLOSED.
    func testAMappedReaderReadsEveryMessageAcrossRingGrowth() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let news = try await client.create("news", size: 100_000)
        let reader = try Reader(["read", daemon.socketPath, "news", "30000"])
        try await Task.sleep(for: .milliseconds(300))
        try await pushNumbered(news, 1...30000)
        let result = try reader.finish()
        XCTAssertEqual(result["count"] as? Int, 30000, "\(result)")
        XCTAssertEqual(result["first"] as? Int, 1)
        XCTAssertEqual(result["in_order"] as? Bool, true)
        XCTAssertEqual(result["payloads"] as? Bool, true)
        XCTAssertGreaterThan(result["tickets"] as? Int ?? 0, 1, "the ring moved to bigger files and the reader followed: \(result)")
        XCTAssertEqual(result["socket_messages"] as? Int, 0, "nothing came as MESSAGE frames")
        // A mapped reader ends as a socket reader does: CLOSED after the last message.
        let late = try Reader(["read", daemon.socketPath, "news", "1000000", "29990"])
        try await Task.sleep(for: .milliseconds(300))
        try await news.close()
        let closed = try late.finish()
        XCTAssertEqual(closed["count"] as? Int, 11, "\(closed)")
        XCTAssertEqual(closed["closed"] as? Int, 30000)
        await client.close()
    }

    /// A mapped reader of another user that stops reading is never waited for, and loses only
    /// what a socket reader of that user would: it is detached from the ring before the ring
    /// moves past it and handed what it misses over the socket, up to its queue; beyond that it
    /// gets FULL at the first message the ring still has.
    func testAnOvertakenMappedReaderGetsFullAtTheRightSequence() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        chmod(daemon.directory.path, 0o755)
        let client = try await CometClient.connect(to: daemon.socketPath)
        let ring = try await client.create("small", size: 100)
        try await pushNumbered(ring, 1...50)
        // Paused while ten rings go by: detached before it is overtaken, handed the rest over the
        // socket (its queue holds them), never waited for.
        let paused = try Reader(["read", daemon.socketPath, "small", "1050", "1", "20", "2.0"], uid: Hostile.uid)
        try await Task.sleep(for: .milliseconds(700))
        let started = Date()
        try await pushNumbered(ring, 51...1050, batch: 10)
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.5, "a reader of another user never holds the producer")
        let kept = try paused.finish()
        assertEverything(kept, 1050)
        XCTAssertEqual(kept["position_page"] as? Bool, true, "\(kept)")
        XCTAssertNotNil(kept["detached"] as? Int, "detached, not overtaken: \(kept)")
        XCTAssertGreaterThan(kept["socket_messages"] as? Int ?? 0, 0, "\(kept)")
        // Paused while more goes by than its queue holds (1 MiB): FULL, from the daemon, naming the
        // oldest message the ring keeps when it reads on, as a socket reader would get it.
        let overtaken = try Reader(["read", daemon.socketPath, "small", "1000000", "1051", "20", "2.0"], uid: Hostile.uid)
        try await Task.sleep(for: .milliseconds(700))
        try await pushNumbered(ring, 1051...201_050, batch: 5000)
        let result = try overtaken.finish()
        XCTAssertEqual(result["full"] as? Int, 200_951, "FULL names the oldest message the ring keeps: \(result)")
        XCTAssertEqual(result["in_order"] as? Bool, true, "\(result)")
        XCTAssertEqual(result["payloads"] as? Bool, true, "\(result)")
        XCTAssertEqual(result["first"] as? Int, 1051, "\(result)")
        let count = result["count"] as? Int ?? 0
        XCTAssertGreaterThan(count, 100, "its queue held more than the ring: \(result)")
        XCTAssertLessThan(count, 200_000, "\(result)")
        await client.close()
    }

    /// A reader of `range` that pauses `pause` seconds after 20 messages while `range` is pushed;
    /// what it got, checked whole.
    private func pausedRead(_ channel: ChannelProducer, _ range: ClosedRange<Int>, pause: Double, _ daemon: Daemon) async throws -> [String: Any] {
        let reader = try Reader(["read", daemon.socketPath, channel.name, "\(range.count)", "\(range.lowerBound)", "20", "\(pause)"])
        try await Task.sleep(for: .milliseconds(200))
        try await pushNumbered(channel, range, batch: 50)
        let result = try reader.finish()
        assertEverything(result, range.count)
        return result
    }

    /// The reader got `count` messages, in order, with their payloads, and no FULL.
    private func assertEverything(_ result: [String: Any], _ count: Int, line: UInt = #line) {
        XCTAssertEqual(result["count"] as? Int, count, "\(result)", line: line)
        XCTAssertNil(result["full"] as? Int, "\(result)", line: line)
        XCTAssertEqual(result["in_order"] as? Bool, true, "\(result)", line: line)
        XCTAssertEqual(result["payloads"] as? Bool, true, "\(result)", line: line)
    }

    /// A mapped reader of the producer's own user is protected as a socket reader is. On a ring of
    /// at least 4096 messages, paused for less than the reader grace while the ring moves on, it
    /// holds the producer and stays on the ring (it says how far it read in its position page, and
    /// with ACK when the page asks); paused for longer, it is detached from the ring once the grace
    /// is over and served over the socket from the first message it had not read. On a smaller
    /// ring it is detached at once. Nothing lost, nothing twice (it drops what it had read from
    /// the ring already).
    func testAPausedMappedReaderOfTheProducersUserLosesNothing() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let ring = try await client.create("ring", size: 4096)
        try await pushNumbered(ring, 1...50)
        let brief = try Reader(["read", daemon.socketPath, "ring", "10000", "1", "20", "0.5"])
        try await Task.sleep(for: .milliseconds(200))
        let started = Date()
        try await pushNumbered(ring, 51...10000, batch: 50)
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 0.2, "the producer waited for the paused reader")
        let held = try brief.finish()
        assertEverything(held, 10000)
        XCTAssertEqual(held["position_page"] as? Bool, true, "\(held)")
        XCTAssertNil(held["detached"] as? Int, "a pause within the grace keeps it on the ring: \(held)")
        XCTAssertEqual(held["socket_messages"] as? Int, 0, "\(held)")
        XCTAssertGreaterThan(held["reports"] as? Int ?? 0, 0, "it said how far it read when asked: \(held)")
        // Paused beyond the grace (1 s): detached, then served over the socket.
        let result = try await pausedRead(ring, 10001...20000, pause: 1.8, daemon)
        XCTAssertNotNil(result["detached"] as? Int, "detached from the ring: \(result)")
        XCTAssertGreaterThan(result["socket_messages"] as? Int ?? 0, 0, "then served over the socket: \(result)")
        // On a 100-message ring the same pause detaches it at once.
        let moved = try await pausedRead(try await client.create("small", size: 100), 1...1000, pause: 0.5, daemon)
        XCTAssertNotNil(moved["detached"] as? Int, "a ring under 4096 messages is no buffer to wait on: \(moved)")
        // A reader that keeps up says how far it read and stays on the ring.
        let steady = try Reader(["read", daemon.socketPath, "ring", "2000", "20001"])
        try await Task.sleep(for: .milliseconds(200))
        for start in stride(from: 20001, through: 21991, by: 10) {
            try await pushNumbered(ring, start...(start + 9), batch: 10)
            if start % 50 == 1 { try await Task.sleep(for: .milliseconds(2)) }
        }
        let kept = try steady.finish()
        XCTAssertEqual(kept["count"] as? Int, 2000, "\(kept)")
        XCTAssertEqual(kept["in_order"] as? Bool, true)
        XCTAssertNil(kept["detached"] as? Int, "it stays on the ring: \(kept)")
        XCTAssertEqual(kept["socket_messages"] as? Int, 0, "\(kept)")
        await client.close()
    }

    /// A newest channel read from its ring: a reader that was away skips to the latest value, as a
    /// socket reader does, without FULL.
    func testAMappedReaderOfANewestChannelSkipsToTheLatestValue() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        chmod(daemon.directory.path, 0o755)
        let client = try await CometClient.connect(to: daemon.socketPath)
        let value = try await client.createNewest("temperature")
        try await pushNumbered(value, 1...3, batch: 1)
        // Another user's reader (never held): reads 1 value, pauses while 500 more come.
        let reader = try Reader(["read", daemon.socketPath, "temperature", "2", "1", "1", "1.0"], uid: Hostile.uid)
        try await Task.sleep(for: .milliseconds(500))
        try await pushNumbered(value, 4...503, batch: 1)
        let result = try reader.finish()
        XCTAssertNil(result["full"] as? Int, "\(result)")
        XCTAssertEqual(result["count"] as? Int, 2, "\(result)")
        XCTAssertEqual(result["last"] as? Int, 503, "the latest value after the pause: \(result)")
        XCTAssertEqual(result["payloads"] as? Bool, true)
        await client.close()
    }

    /// Nothing a reader does with its descriptor reaches the daemon's ring or other readers.
    func testTheDescriptorCannotWriteTheRing() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let news = try await client.create("news", size: 1000)
        try await pushNumbered(news, 1...100)
        for uid: UInt32? in [nil, Hostile.uid] {
            let result = try Reader(["tamper", daemon.socketPath, "news"], uid: uid).finish()
            let who = uid.map { "uid \($0)" } ?? "root"
            print("tampering as \(who): \(result)")
            XCTAssertEqual(result["mmap_shared_writable"] as? String, "EACCES", "\(who): \(result)")
            XCTAssertEqual(result["mprotect_writable"] as? String, "EACCES", "\(who): \(result)")
            XCTAssertEqual(result["write"] as? String, "EBADF", "\(who): \(result)")
            XCTAssertNotEqual(result["truncate"] as? String, "allowed", "\(who): \(result)")
            if result["reopen_rw"] as? String == "allowed" {
                // Reopened writable through /proc: the seals still refuse every way of writing.
                XCTAssertEqual(result["reopen_write"] as? String, "EPERM", "\(who): \(result)")
                XCTAssertEqual(result["reopen_mmap_writable"] as? String, "EPERM", "\(who): \(result)")
                XCTAssertEqual(result["reopen_truncate"] as? String, "EPERM", "\(who): \(result)")
            }
            XCTAssertEqual(result["private_scribbled"] as? Bool, true, "a private copy is the reader's own")
            XCTAssertEqual(result["shared_last_after"] as? Int, 100, "the shared ring is untouched")
            // Every reader is protected: it has a position page of its own to write (here a claim
            // far beyond what was announced, which the daemon does not believe), never to resize.
            XCTAssertEqual(result["page_write"] as? String, "allowed", "\(who): \(result)")
            XCTAssertEqual(result["page_truncate"] as? String, "EPERM", "\(who): \(result)")
            XCTAssertEqual(result["page_grow"] as? String, "EPERM", "\(who): \(result)")
        }
        try await pushNumbered(news, 101...200)
        let reader = try Reader(["read", daemon.socketPath, "news", "200"]).finish()
        XCTAssertEqual(reader["count"] as? Int, 200)
        XCTAssertEqual(reader["payloads"] as? Bool, true, "every reader still reads what was pushed")
        await client.close()
    }

    /// A user that holds every connection its quota allows still maps its rings: RING comes on a
    /// connection of its own, let in over the quota for that request alone (four at once per
    /// user). Anything else on such a connection is refused as before, and beyond four the
    /// daemon ends new connections at once.
    func testARingIsHadAtTheConnectionQuota() async throws {
        let daemon = try Daemon(arguments: ["--user-quota", "connections=1"], executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        chmod(daemon.directory.path, 0o755)
        let client = try await CometClient.connect(to: daemon.socketPath)
        let channel = try await client.create("quota", size: 5000)
        try await pushNumbered(channel, 1...3000)
        // The reader's one connection is all uid 4242 may hold; its ring comes all the same.
        let result = try Reader(["read", daemon.socketPath, "quota", "3000", "1"], uid: Hostile.uid).finish()
        XCTAssertNil(result["error"], "\(result)")
        assertEverything(result, 3000)
        XCTAssertGreaterThanOrEqual(result["tickets"] as? Int ?? 0, 1, "read from its ring: \(result)")
        XCTAssertEqual(result["socket_messages"] as? Int, 0, "\(result)")
        // Seven connections at once (the reader's is gone): one within the quota, four let in for
        // RING (served: a ticket never given is BAD_TOKEN; HELLO is refused), two ended at once.
        try await Task.sleep(for: .milliseconds(300))
        let crowd = try Reader(["crowd", daemon.socketPath, "-", "7"], uid: Hostile.uid).finish()
        XCTAssertEqual(crowd["at_once"] as? [String], ["QUOTA_EXCEEDED", "QUOTA_EXCEEDED"], "\(crowd)")
        XCTAssertEqual(
            (crowd["answers"] as? [String])?.sorted(), ["BAD_TOKEN", "OK", "QUOTA_EXCEEDED", "QUOTA_EXCEEDED", "QUOTA_EXCEEDED"].sorted(),
            "\(crowd)")
        await client.close()
    }

    /// Only a reader the policy lets subscribe is given a ticket, and only its own user can
    /// redeem it, once.
    func testOnlyAllowedReadersGetTheRing() async throws {
        let daemon = try Daemon(arguments: ["--policy", try policyFile("subscribe secret.* user:0\n")], executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let secret = try await client.create("secret.plans", size: 1000)
        try await pushNumbered(secret, 1...10)
        chmod(daemon.directory.path, 0o755)
        chmod(daemon.socketPath, 0o777)
        let denied = try Reader(["read", daemon.socketPath, "secret.plans", "10"], uid: Hostile.uid).finish()
        XCTAssertEqual(denied["error"] as? String, "PERMISSION_DENIED", "\(denied)")
        let stolen = try Reader(["steal", daemon.socketPath, "secret.plans", "\(Hostile.uid)"]).finish()
        XCTAssertEqual(stolen["other_uid_refused"] as? Bool, true, "\(stolen)")
        XCTAssertEqual(stolen["owner_got_descriptor"] as? Bool, true, "\(stolen)")
        XCTAssertEqual(stolen["second_use"] as? String, "BAD_TOKEN", "a ticket is used once: \(stolen)")
        await client.close()
    }

    /// kill -9 under the test supervisor (the file-descriptor store): the mapped reader's
    /// connection resets, it subscribes again after its last message, mapped, in the same epoch;
    /// the producer takes its channel back; every message is read once, in order.
    func testAMappedReaderGoesOnAfterKillNine() throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        defer { _ = supervisor.stop(SIGTERM) }
        let producer = try RawConnection(supervisor.socketPath)
        _ = try producer.hello()
        var body = try producer.expectOK(producer.send(.create(name: "crashy", kind: .buffered, size: 100_000)))
        let created = try CreateReply(from: &body)
        func push(_ connection: RawConnection, _ channel: UInt64, _ range: ClosedRange<Int>) throws {
            for start in stride(from: range.lowerBound, through: range.upperBound, by: 100) {
                let payloads = (start...min(range.upperBound, start + 99)).map { ByteBuffer(string: "m\($0)") }
                _ = try connection.expectOK(connection.send(.pushBatch(channel: channel, payloads: MessageBatch(payloads))))
            }
        }
        let reader = try Reader(["read", supervisor.socketPath, "crashy", "2000"])
        usleep(300_000)
        try push(producer, created.channel, 1...1000)
        usleep(500_000)
        supervisor.stop(SIGKILL)
        try supervisor.start()
        let again = try RawConnection(supervisor.socketPath)
        _ = try again.hello()
        var adopted = try again.expectOK(again.send(.adopt(channel: created.channel, tokenHigh: created.tokenHigh, tokenLow: created.tokenLow)))
        XCTAssertEqual(try AdoptReply(from: &adopted).lastSequence, 1000)
        try push(again, created.channel, 1001...2000)
        let result = try reader.finish()
        XCTAssertEqual(result["count"] as? Int, 2000, "\(result)\n\(supervisor.log)")
        XCTAssertEqual(result["in_order"] as? Bool, true, "\(result)")
        XCTAssertEqual(result["payloads"] as? Bool, true)
        XCTAssertEqual(result["reconnects"] as? Int, 1, "\(result)")
        XCTAssertGreaterThanOrEqual(result["tickets"] as? Int ?? 0, 2, "mapped again after the crash: \(result)")
    }

    /// A reader that half-closes its connection after RING_ADVANCED (it sends nothing more) has
    /// the daemon close that connection; the ticket still gets it the ring for a while, so it can
    /// read what was announced — as a socket reader gets the MESSAGE frames flushed before the close.
    func testATicketOutlivesItsConnectionForAWhile() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let news = try await client.create("news", size: 100_000)
        try await pushNumbered(news, 1...10)
        let reader = try RawConnection(daemon.socketPath)
        _ = try reader.hello()
        _ = try reader.expectOK(reader.send(.subscribe(name: "news", position: .oldest, epoch: 0, wait: false, mapped: true)))
        var ticket: UInt64 = 0
        var last: UInt64 = 0
        while ticket == 0, let frame = try reader.read() {
            if case .ringAdvanced(_, let announced, let given, _, _, _) = frame { (ticket, last) = (given, announced) }
        }
        XCTAssertNotEqual(ticket, 0)
        XCTAssertEqual(last, 10)
        shutdown(reader.fd, Int32(SHUT_WR))
        XCTAssertTrue(try reader.closedByServer(), "the daemon closes a connection that sends no more")
        let ring = try MappedRing.fetch(path: daemon.socketPath, ticket: ticket)
        for sequence in UInt64(1)...last {
            guard case .message(let payload) = ring.read(sequence) else { return XCTFail("message \(sequence) is not in the ring") }
            XCTAssertEqual(payload, Array("m\(sequence)".utf8))
        }
        await client.close()
    }

    /// A live upgrade keeps a mapped reader's subscription: the new process serves it from the
    /// first message the reader was not known to have read — nothing lost, nothing twice — and, as
    /// it subscribed with RETURN, from its ring as soon as it is ready for it. (The reader pauses
    /// over the upgrade, so that it is behind when it comes.)
    func testALiveUpgradeCarriesAMappedReader() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let news = try await client.create("news", size: 100_000)
        let reader = try Reader(["read", daemon.socketPath, "news", "6200", "0", "2500", "1.5"])
        try await Task.sleep(for: .milliseconds(500))
        try await pushNumbered(news, 1...3000)
        try await Task.sleep(for: .milliseconds(300))
        kill(daemon.process.processIdentifier, SIGHUP)
        let deadline = Date().addingTimeInterval(20)
        while !daemon.log.contains("state taken over"), Date() < deadline { usleep(20_000) }
        try await pushNumbered(news, 3001...6000)
        // Then one at a time: once the reader has caught up, a push finds it ready for its ring.
        for sequence in 6001...6200 {
            try await pushNumbered(news, sequence...sequence)
            try await Task.sleep(for: .milliseconds(2))
        }
        let result = try reader.finish()
        XCTAssertEqual(result["count"] as? Int, 6200, "\(result)")
        XCTAssertEqual(result["in_order"] as? Bool, true, "\(result)")
        XCTAssertEqual(result["payloads"] as? Bool, true)
        // Half a ring behind at most, it may be given its ring back at the new process's first
        // delivery, before any MESSAGE; a next process that did not know it asked for RETURN would
        // send the 3,200 messages after the upgrade over the socket.
        XCTAssertEqual(result["last_from"] as? String, "ring", "back on its ring after the upgrade: \(result)")
        XCTAssertLessThan(result["socket_messages"] as? Int ?? 0, 3200, "not all of it over the socket: \(result)")
        await client.close()
    }
}
