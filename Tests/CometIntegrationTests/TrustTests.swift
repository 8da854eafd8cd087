import Comet
import CometWire
import Foundation
import NIOCore
import XCTest

/// One local user against a daemon shared with others (docs/SECURITY.md): every attack ends in a
/// refusal or a bound, the daemon's memory stays under its ceiling plus a margin, and a control
/// client's round trip stays under 50 ms while it runs. Attacks run as uid 4242 through setpriv.
final class TrustTests: XCTestCase {
    /// The memory ceiling the attacked daemons run with, and the margin allowed above it (the
    /// process's own code, heap and NIO's buffers, which the accounting does not count).
    static let ceiling = 256 << 20
    static let margin = 64 << 20
    static let maxRoundTrip: TimeInterval = 0.050

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to run attacks as another uid") }
    }

    func attacked(_ extra: [String] = []) throws -> Daemon {
        try Daemon(arguments: ["--max-memory", "256M"] + extra, executable: Daemon.releaseDaemon)
    }

    func assertBounded(_ control: ControlClient, _ daemon: Daemon, file: StaticString = #filePath, line: UInt = #line) {
        let (roundTrip, rss) = control.finish(file: file, line: line)
        XCTAssertLessThan(roundTrip, Self.maxRoundTrip, "control round trip", file: file, line: line)
        XCTAssertLessThan(rss, Self.ceiling + Self.margin, "daemon RSS", file: file, line: line)
        XCTAssertTrue(daemon.process.isRunning, "the daemon died:\n\(daemon.log)", file: file, line: line)
        print("measured: worst control round trip \(Int(roundTrip * 1e6)) µs, peak daemon RSS \(rss >> 20) MiB")
    }

    // MARK: 1. LIST answers: bounded per answer, never above the frame size

    func testPipelinedListWithoutReadingIsBounded() throws {
        let daemon = try attacked()
        defer { daemon.stop() }
        let control = try ControlClient(daemon)
        let result = try Hostile.run(daemon, "list-flood", ["4096", "8"])
        XCTAssertEqual(result["created"] as? Int, 4096)
        assertBounded(control, daemon)
    }

    func testListAndSessionsArePagedToTheFrameSize() async throws {
        let daemon = try Daemon(arguments: ["--max-frame-size", "65536"])
        defer { daemon.stop() }
        let client = try await CometClient.connect(to: daemon.socketPath)
        var producers: [ChannelProducer] = []
        for i in 0..<600 { producers.append(try await client.create(String(format: "page%04d.", i) + String(repeating: "n", count: 200))) }
        let raw = try RawConnection(daemon.socketPath)
        _ = try raw.hello()
        var body = try raw.expectOK(raw.send(.list))
        let first = try ListReply(from: &body)
        XCTAssertTrue(first.more)
        XCTAssertLessThan(first.channels.count, 600)
        let all = try await client.channels()
        XCTAssertEqual(all.count, 600)
        XCTAssertEqual(Set(all.map(\.name)).count, 600)
        XCTAssertEqual(all.map(\.name), all.map(\.name).sorted())
        XCTAssertTrue(all.allSatisfy { $0.owner == Owner(uid: 0, gid: 0) })
        let table = try runTool("comet", ["channels", "--socket", daemon.socketPath])
        XCTAssertEqual(table.status, 0)
        XCTAssertEqual(table.stdout.split(separator: "\n").count, 601)
        await client.close()
    }

    // MARK: 2. Memory: every byte a user makes the daemon hold is under a quota

    func testUnfinishedFramesAreBoundedPerUser() throws {
        let daemon = try attacked()
        defer { daemon.stop() }
        let control = try ControlClient(daemon)
        // 256 MiB ceiling: a quarter for unfinished frames, a quarter of that per user (16 MiB).
        let result = try Hostile.run(daemon, "partial-frames", ["120", "1"])
        let held = (result["opened"] as? Int ?? 0) - (result["closed_by_daemon"] as? Int ?? 0)
        XCTAssertLessThanOrEqual(held, 17, "\(result)")
        assertBounded(control, daemon)
        XCTAssertTrue(daemon.log.contains("unfinished frame bytes"), daemon.log)
    }

    func testBufferedBytesAreBoundedPerUserAndReturned() throws {
        let daemon = try attacked()
        defer { daemon.stop() }
        let control = try ControlClient(daemon)
        let result = try Hostile.run(daemon, "fill-bytes", ["1000000", "1000000"])
        XCTAssertEqual(result["error"] as? String, "QUOTA_EXCEEDED")
        XCTAssertLessThanOrEqual(result["bytes"] as? Int ?? .max, Self.ceiling / 4)
        XCTAssertGreaterThan(result["bytes"] as? Int ?? 0, Self.ceiling / 8)
        let during = control.finish()
        XCTAssertLessThan(during.roundTrip, Self.maxRoundTrip)
        XCTAssertLessThan(during.rss, Self.ceiling + Self.margin)
        // The attacker is gone: its channel and messages are freed and the memory returned.
        let deadline = Date().addingTimeInterval(5)
        while daemon.residentBytes > during.rss - 32 << 20, Date() < deadline { usleep(100_000) }
        XCTAssertLessThan(daemon.residentBytes, during.rss - 32 << 20, "memory was not returned after the attack")
        print("measured: RSS during \(during.rss >> 20) MiB, after \(daemon.residentBytes >> 20) MiB")
    }

    func testEmptyMessagesAreCharged() throws {
        let daemon = try attacked()
        defer { daemon.stop() }
        let control = try ControlClient(daemon)
        let result = try Hostile.run(daemon, "empty-messages", ["20000"])
        XCTAssertEqual(result["error"] as? String, "QUOTA_EXCEEDED", "\(result)")
        assertBounded(control, daemon)
    }

    func testWaitTimeoutsAreBoundedAndRangeChecked() throws {
        let daemon = try attacked()
        defer { daemon.stop() }
        let control = try ControlClient(daemon)
        let result = try Hostile.run(daemon, "waits", ["20000"])
        // 16,384 pending WAIT_TIMEOUTs daemon-wide, a quarter of that per user.
        XCTAssertEqual(result["refused"] as? Int, 20000 - 4096, "\(result)")
        XCTAssertEqual(result["errors"] as? [String], ["QUOTA_EXCEEDED"])
        XCTAssertEqual(result["huge"] as? String, "ERROR_7", "2^62 ms is refused with INVALID_ARGUMENT")
        assertBounded(control, daemon)
    }

    func testSubscriptionsAreBoundedPerUser() throws {
        let daemon = try attacked(["--limit", "subscriptions=4000"])
        defer { daemon.stop() }
        let control = try ControlClient(daemon)
        let result = try Hostile.run(daemon, "subscriptions", ["600", "4"])
        XCTAssertEqual(result["subscriptions"] as? Int, 1000, "\(result)")
        XCTAssertEqual(result["errors"] as? [String], ["QUOTA_EXCEEDED"])
        assertBounded(control, daemon)
    }

    func testSlowReadersCannotExhaustMemory() throws {
        let daemon = try attacked()
        defer { daemon.stop() }
        let producer = try RawConnection(daemon.socketPath)
        _ = try producer.hello()
        var created = try producer.expectOK(producer.send(.create(name: "firehose", kind: .buffered, size: 100_000)))
        let channel = try CreateReply(from: &created).channel
        let control = try ControlClient(daemon)
        let readers = Thread { _ = try? Hostile.run(daemon, "slow-readers", ["firehose", "200", "6"]) }
        readers.start()
        sleep(2)
        let payload = ByteBuffer(repeating: 0x61, count: 4096)
        // A steady producer (about 50 MB/s), not a single burst: the readers fall behind it.
        for _ in 0..<500 {
            let id = producer.send(.pushBatch(channel: channel, payloads: MessageBatch(Array(repeating: payload, count: 64))))
            _ = try producer.expectOK(id)
            usleep(5_000)
        }
        sleep(2)
        assertBounded(control, daemon)
    }

    // MARK: 3, 4, 8. Descriptors, channels and connections

    func testChannelsAreBoundedPerUserAndOthersCanStillCreate() async throws {
        let daemon = try attacked(["--limit", "channels=2000"])
        defer { daemon.stop() }
        let result = try Hostile.run(daemon, "channels", ["3000"])
        XCTAssertEqual(result["channels"] as? Int, 500, "\(result)")
        XCTAssertEqual(result["errors"] as? [String], ["QUOTA_EXCEEDED"])
        let client = try await CometClient.connect(to: daemon.socketPath)
        _ = try await client.create("after-the-attack")
        await client.close()
    }

    func testConnectionsAreBoundedPerUserAndHalfOpenOnesTimeOut() throws {
        let daemon = try attacked(["--limit", "connections=400", "--handshake-timeout", "1"])
        defer { daemon.stop() }
        let control = try ControlClient(daemon)
        let result = try Hostile.run(daemon, "connections", ["300", "none", "2.5"])
        // 100 per user: 200 refused at once, the 100 others closed for not completing HELLO.
        XCTAssertEqual(result["closed_by_daemon"] as? Int, 300, "\(result)")
        assertBounded(control, daemon)
        XCTAssertTrue(daemon.log.contains("did not complete HELLO"), daemon.log)
    }

    func testIdleConnectionsHoldingNothingAreClosed() throws {
        let daemon = try Daemon(arguments: ["--idle-timeout", "1"])
        defer { daemon.stop() }
        let idle = try RawConnection(daemon.socketPath)
        _ = try idle.hello()
        let reader = try RawConnection(daemon.socketPath)
        _ = try reader.hello()
        _ = try reader.expectOK(reader.send(.subscribe(name: "later", position: .next, epoch: 0, wait: true)))
        var code: ErrorCode?
        while let frame = try idle.read(timeout: 5_000) {
            if case .error(0, let got, _) = frame { code = got }
        }
        XCTAssertEqual(code, .timedOut)
        _ = try reader.expectOK(reader.send(.ping))
    }

    func testOutOfDescriptorsPausesAcceptWithoutSpinning() throws {
        let daemon = try Daemon(arguments: ["--limit", "connections=10000"], launcher: ["/usr/bin/prlimit", "--nofile=48:48", "--"], bindOwnSocket: true)
        defer { daemon.stop() }
        let served = try RawConnection(daemon.socketPath)
        _ = try served.hello()
        var flood: [RawConnection] = []
        for _ in 0..<80 { flood.append(try RawConnection(daemon.socketPath)) }
        sleep(1)
        let before = daemon.cpuSeconds
        sleep(2)
        let cpu = daemon.cpuSeconds - before
        XCTAssertLessThan(cpu, 0.2, "the daemon spins while out of descriptors")
        _ = try served.expectOK(served.send(.ping))
        flood = []
        let later = try RawConnection(daemon.socketPath)
        _ = try later.hello()
        XCTAssertTrue(daemon.log.contains("cannot accept connections"), daemon.log)
        print("measured: daemon CPU over 2 s out of descriptors: \(cpu) s")
    }

    // MARK: 5, 7. Sessions are their user's

    func testOtherUsersCannotAddressOrSeeSessions() async throws {
        let daemon = try Daemon()
        defer { daemon.stop() }
        let victim = try await CometClient.connect(to: daemon.socketPath)
        let result = try Hostile.run(daemon, "sessions-inject", [String(victim.session.id, radix: 16)])
        XCTAssertEqual(result["create_private"] as? String, "NO_SUCH_SESSION")
        XCTAssertEqual(result["wait_timeout"] as? String, "NO_SUCH_SESSION")
        XCTAssertEqual(result["uids"] as? [Int], [Int(Hostile.uid)], "a user sees only its own sessions")
        await victim.close()
    }

    func testPolicyMayGrantAddressingSessions() async throws {
        let daemon = try Daemon(arguments: ["--policy", try policyFile("address-sessions user:\(Hostile.uid)\n")])
        defer { daemon.stop() }
        let victim = try await CometClient.connect(to: daemon.socketPath)
        let result = try Hostile.run(daemon, "sessions-inject", [String(victim.session.id, radix: 16)])
        XCTAssertEqual(result["create_private"] as? String, "OK")
        await victim.close()
    }

    // MARK: 6. Owners: who produces a channel, and pinning it

    func testOwnerIsShownAndCanBePinned() async throws {
        let daemon = try Daemon()
        defer { daemon.stop() }
        let impostor = Thread { _ = try? Hostile.run(daemon, "create", ["svc.status", "4"]) }
        impostor.start()
        let client = try await CometClient.connect(to: daemon.socketPath)
        var found = false
        for _ in 0..<100 where !found {
            found = try await client.channels().contains { $0.name == "svc.status" }
            if !found { try await Task.sleep(for: .milliseconds(20)) }
        }
        let open = try await client.subscribe("svc.status")
        XCTAssertEqual(open.info.owner.uid, Hostile.uid)
        do {
            _ = try await client.subscribe("svc.status", owner: 0)
            XCTFail("an impostor's channel was accepted")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .ownerMismatch)
        }
        let pinned = try await client.subscribe("svc.status", owner: Hostile.uid)
        XCTAssertEqual(pinned.info.owner, Owner(uid: Hostile.uid, gid: Hostile.uid))
        let cli = try runTool("comet", ["listen", "svc.status", "--owner", "root", "--socket", daemon.socketPath])
        XCTAssertEqual(cli.status, 1, cli.stderr)
        XCTAssertTrue(cli.stderr.contains("OWNER_MISMATCH") || cli.stderr.contains("uid 4242"), cli.stderr)

        // A waiting subscription pinned to root ends with OWNER_MISMATCH when someone else creates it.
        let waiting = try await client.subscribe("svc.later", wait: true, owner: 0)
        let squatter = Thread { _ = try? Hostile.run(daemon, "create", ["svc.later", "2"]) }
        squatter.start()
        do {
            for try await _ in waiting { XCTFail("read an impostor's message") }
            XCTFail("the waiting subscription did not end")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .ownerMismatch)
        }
        await client.close()
    }

    // MARK: B. Policy

    func testPolicyReservesNamesAndReloadsOnHangup() async throws {
        let path = try policyFile("""
            # system channels are root's; anyone may read them
            create sys.* user:root
            subscribe secret.* user:root
            """)
        let daemon = try Daemon(arguments: ["--policy", path])
        defer { daemon.stop() }
        XCTAssertEqual(try Hostile.run(daemon, "create", ["sys.clock", "0"])["result"] as? String, "PERMISSION_DENIED")
        XCTAssertEqual(try Hostile.run(daemon, "create", ["user.clock", "0"])["result"] as? String, "OK")
        let root = try await CometClient.connect(to: daemon.socketPath)
        _ = try await root.create("sys.clock")
        _ = try await root.create("secret.keys")
        let raw = try RawConnection(daemon.socketPath)
        _ = try raw.hello()

        // A bad file is refused with its line; the old policy stays.
        try "create sys.* user:root\nallow everything\n".write(toFile: path, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        try await waitForLog(daemon, "policy not reloaded")
        XCTAssertTrue(daemon.log.contains("\(path):2: unknown rule 'allow'"), daemon.log)
        XCTAssertEqual(try Hostile.run(daemon, "create", ["sys.other", "0"])["result"] as? String, "PERMISSION_DENIED")

        // A good file takes effect without dropping anyone.
        try "create sys.* user:root,user:\(Hostile.uid)\n".write(toFile: path, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        try await waitForLog(daemon, "policy reloaded")
        XCTAssertEqual(try Hostile.run(daemon, "create", ["sys.other", "0"])["result"] as? String, "OK")
        _ = try raw.expectOK(raw.send(.ping))
        await root.close()
    }

    func testPolicyDecidesWhoSubscribes() async throws {
        let daemon = try Daemon(arguments: ["--policy", try policyFile("subscribe secret.* user:root\nsubscribe secret.public *\n")])
        defer { daemon.stop() }
        let root = try await CometClient.connect(to: daemon.socketPath)
        _ = try await root.create("secret.keys")
        _ = try await root.create("secret.public")
        _ = try await root.subscribe("secret.keys")
        let other = try RawConnection(daemon.socketPath)
        _ = try other.hello()
        // `comet listen` as uid 4242, from a copy it can reach wherever the checkout lives.
        let comet = daemon.directory.appendingPathComponent("comet").path
        try FileManager.default.copyItem(atPath: Daemon.executable("comet").path, toPath: comet)
        chmod(daemon.directory.path, 0o755)
        let denied = try runTool(
            "/usr/bin/setpriv",
            ["--reuid=4242", "--regid=4242", "--clear-groups", comet, "listen", "secret.keys", "--count", "0", "--socket", daemon.socketPath],
            absolute: true)
        XCTAssertEqual(denied.status, 1, denied.stderr)
        XCTAssertTrue(denied.stderr.contains("PERMISSION_DENIED"), denied.stderr)
        let allowed = try runTool(
            "/usr/bin/setpriv",
            ["--reuid=4242", "--regid=4242", "--clear-groups", comet, "listen", "secret.public", "--count", "0", "--socket", daemon.socketPath],
            absolute: true)
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        await root.close()
    }

    func waitForLog(_ daemon: Daemon, _ text: String) async throws {
        for _ in 0..<200 {
            if daemon.log.contains(text) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTFail("no '\(text)' in the log:\n\(daemon.log)")
    }

    // MARK: 9. Relays go only where the requester could go

    func testRelayIsNoDeputy() throws {
        let daemon = try Daemon()
        defer { daemon.stop() }
        let hidden = try Daemon()
        defer { hidden.stop() }
        chmod(hidden.directory.path, 0o700)
        XCTAssertEqual(try Hostile.run(daemon, "relay", ["unix:" + hidden.socketPath])["result"] as? String, "PERMISSION_DENIED")
        // A missing socket in a closed directory reads the same: no probing.
        XCTAssertEqual(
            try Hostile.run(daemon, "relay", ["unix:" + hidden.directory.appendingPathComponent("nothing.sock").path])["result"] as? String,
            "PERMISSION_DENIED")
        // Where the user may look, a missing socket is just unreachable.
        XCTAssertEqual(try Hostile.run(daemon, "relay", ["/tmp/comet-no-such-\(getpid()).sock"])["result"] as? String, "UPSTREAM_UNREACHABLE")
        // Opened to the user, the relay works (the upstream has no such channel).
        chmod(hidden.directory.path, 0o755)
        XCTAssertEqual(try Hostile.run(daemon, "relay", ["unix:" + hidden.socketPath])["result"] as? String, "NO_SUCH_CHANNEL")
    }

    // MARK: E. Shutdown is bounded

    func testShutdownDrainsReadersWithinItsBound() throws {
        let daemon = try Daemon(arguments: ["--shutdown-drain", "1"])
        let producer = try RawConnection(daemon.socketPath)
        _ = try producer.hello()
        var created = try producer.expectOK(producer.send(.create(name: "news", kind: .buffered, size: 100_000)))
        let channel = try CreateReply(from: &created).channel
        let good = try RawConnection(daemon.socketPath)
        _ = try good.hello()
        _ = try good.expectOK(good.send(.subscribe(name: "news", position: .next, epoch: 0, wait: false)))
        let stuck = try RawConnection(daemon.socketPath, receiveBuffer: 4096)
        _ = try stuck.hello()
        _ = try stuck.expectOK(stuck.send(.subscribe(name: "news", position: .next, epoch: 0, wait: false)))
        let payload = ByteBuffer(repeating: 0x62, count: 1024)
        for _ in 0..<100 { _ = try producer.expectOK(producer.send(.pushBatch(channel: channel, payloads: MessageBatch(Array(repeating: payload, count: 100))))) }
        // The good reader takes everything.
        var last: UInt64 = 0
        while last < 10_000, let frame = try good.read() {
            if case .message(_, let seq, _) = frame { last = seq }
        }
        let start = Date()
        kill(daemon.process.processIdentifier, SIGTERM)
        var closed = false
        while let frame = try good.read(timeout: 5_000) {
            if case .closed(_, 10_000) = frame { closed = true }
        }
        daemon.process.waitUntilExit()
        let took = Date().timeIntervalSince(start)
        XCTAssertTrue(closed, "the reader that had everything got CLOSED")
        XCTAssertLessThan(took, 3.5, "the daemon exits within drain + 1 s whatever its clients do")
        print("measured: shutdown with a stuck reader took \(Int(took * 1000)) ms (drain 1 s)")
    }
}
