import Comet
import Foundation
import XCTest

/// cometd as a process: socket activation, sd_notify, its socket file, graceful shutdown.
final class DaemonTests: XCTestCase {
    func testSocketActivation() async throws {
        let launcher = "/usr/bin/systemd-socket-activate"
        guard FileManager.default.isExecutableFile(atPath: launcher) else {
            throw DaemonFailure("\(launcher) is missing: install systemd (the test command does)")
        }
        let directory = try Daemon.temporaryDirectory()
        let activated = directory.appendingPathComponent("activated.sock").path
        let unused = directory.appendingPathComponent("unused.sock").path
        let daemon = try Daemon(
            environment: ["COMET_SOCKET": unused], launcher: [launcher, "-l", activated], waitForSocket: false)
        defer { daemon.stop() }
        let client = try await connectRetrying(activated)
        let producer = try await client.create("activated")
        try await producer.push("works")
        let channels = try await client.channels()
        XCTAssertEqual(channels.map(\.name), ["activated"])
        await client.close()
        XCTAssertFalse(FileManager.default.fileExists(atPath: unused), "an activated daemon binds nothing of its own")
        XCTAssertTrue(daemon.log.contains("inherited"), daemon.log)
    }

    func testReadyStatusAndStoppingAreNotified() throws {
        let directory = try Daemon.temporaryDirectory()
        let notify = try NotifySocket(path: directory.appendingPathComponent("notify").path)
        let daemon = try Daemon(environment: ["NOTIFY_SOCKET": notify.path], waitForSocket: false)
        let ready = try notify.waitFor("READY=1")
        XCTAssertTrue(ready.joined().contains("STATUS=serving; 0 connections, 0 channels"), "\(ready)")
        XCTAssertTrue(RawConnection.canConnect(daemon.socketPath), "READY=1 comes once the socket serves")
        kill(daemon.process.processIdentifier, SIGTERM)
        _ = try notify.waitFor("STOPPING=1")
        XCTAssertEqual(daemon.stop(), 0)
    }

    func testWatchdogPings() throws {
        let directory = try Daemon.temporaryDirectory()
        let notify = try NotifySocket(path: directory.appendingPathComponent("notify").path)
        let daemon = try Daemon(
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"], waitForSocket: false)
        defer { daemon.stop() }
        _ = try notify.waitFor("READY=1")
        _ = try notify.waitFor("WATCHDOG=1", timeout: 2000)
    }

    func testGracefulShutdownDeliversThenCloses() async throws {
        let daemon = try Daemon()
        let producerClient = try await CometClient.connect(to: daemon.socketPath)
        let producer = try await producerClient.create("last-words")
        let reader = try RawConnection(daemon.socketPath, receiveBuffer: 4096)
        _ = try reader.hello()
        _ = try reader.expectOK(reader.send(.subscribe(name: "last-words", position: .next, epoch: 0, wait: false)))
        try await producer.push(batch: (1...20).map { _ in [UInt8](repeating: 0x62, count: 100) })
        XCTAssertEqual(daemon.stop(), 0, daemon.log)
        var sequences: [UInt64] = []
        var closedAt: UInt64?
        var shutdownNotice = false
        while let frame = try reader.read() {
            switch frame {
            case .message(_, let seq, _): sequences.append(seq)
            case .closed(_, let last): closedAt = last
            case .error(0, .shuttingDown, _): shutdownNotice = true
            default: break
            }
        }
        XCTAssertEqual(sequences, Array(1...20))
        XCTAssertEqual(closedAt, 20)
        XCTAssertTrue(shutdownNotice)
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.socketPath), "the socket file is removed")
        await producerClient.close()
    }

    func testStaleSocketIsReplacedButALiveOneIsNot() throws {
        let first = try Daemon()
        // A second daemon on the same path must refuse, and leave the first one serving.
        let second = Process()
        second.executableURL = Daemon.executable("cometd")
        second.arguments = ["--socket", first.socketPath]
        second.standardError = FileHandle.nullDevice
        try second.run()
        second.waitUntilExit()
        XCTAssertNotEqual(second.terminationStatus, 0)
        XCTAssertTrue(RawConnection.canConnect(first.socketPath))

        // Killed without cleanup, the first leaves a stale socket file behind; a new daemon takes the path.
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        XCTAssertTrue(FileManager.default.fileExists(atPath: first.socketPath))
        let third = Process()
        third.executableURL = Daemon.executable("cometd")
        third.arguments = ["--socket", first.socketPath]
        third.standardError = FileHandle.nullDevice
        try third.run()
        defer {
            kill(third.processIdentifier, SIGTERM)
            third.waitUntilExit()
        }
        var answered = false
        for _ in 0..<400 where !answered {
            answered = RawConnection.canConnect(first.socketPath)
            if !answered { usleep(25_000) }
        }
        XCTAssertTrue(answered)
    }

    func testRefusesToRemoveAFileThatIsNotASocket() throws {
        let directory = try Daemon.temporaryDirectory()
        let path = directory.appendingPathComponent("plain").path
        _ = FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8))
        let r = try runTool("cometd", ["--socket", path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("not a socket"), r.stderr)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "keep me")
    }

    func connectRetrying(_ path: String) async throws -> CometClient {
        var lastError: Error?
        for _ in 0..<100 {
            do { return try await CometClient.connect(to: path) } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        throw lastError!
    }
}

/// The unit files in systemd/ pass `systemd-analyze verify` with ExecStart pointing at the built daemon.
final class UnitFileTests: XCTestCase {
    func testUnitsVerify() throws {
        let analyze = "/usr/bin/systemd-analyze"
        guard FileManager.default.isExecutableFile(atPath: analyze) else {
            throw DaemonFailure("\(analyze) is missing: install systemd (the test command does)")
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let directory = try Daemon.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for unit in ["cometd.socket", "cometd.service"] {
            var text = try String(contentsOf: root.appendingPathComponent("systemd/\(unit)"), encoding: .utf8)
            text = text.replacingOccurrences(of: "/usr/local/bin/cometd", with: Daemon.executable("cometd").path)
            try text.write(to: directory.appendingPathComponent(unit), atomically: true, encoding: .utf8)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: analyze)
        process.arguments = ["verify", directory.appendingPathComponent("cometd.socket").path, directory.appendingPathComponent("cometd.service").path]
        let err = Pipe()
        process.standardError = err
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, message)
        XCTAssertEqual(message, "", "systemd-analyze verify has remarks")

        // Hardening: exposure at or below 1.0, and no private user namespace (SO_PEERCRED must
        // see real uids), with the resource limits the daemon sizes itself from.
        let security = try runTool(analyze, ["security", "--offline=true", directory.appendingPathComponent("cometd.service").path], absolute: true)
        let line = try XCTUnwrap(security.stdout.split(separator: "\n").first { $0.contains("Overall exposure level") }, security.stdout + security.stderr)
        let level = try XCTUnwrap(Double(line.split(separator: ":").last!.split(separator: " ").first!))
        XCTAssertLessThanOrEqual(level, 1.0, String(line))
        let service = try String(contentsOf: directory.appendingPathComponent("cometd.service"), encoding: .utf8)
        XCTAssertFalse(service.contains("PrivateUsers=yes"))
        for setting in ["LimitNOFILE=", "MemoryMax=", "TasksMax=", "ExecReload=", "FileDescriptorStoreMax="] {
            XCTAssertTrue(service.contains(setting), setting)
        }
        XCTAssertTrue(service.contains("PrivateNetwork=yes"), "cometd never has a network: federation is comet-bridge's")
        XCTAssertTrue(service.contains("RestrictAddressFamilies=AF_UNIX\n"), "AF_UNIX only")
        XCTAssertLessThanOrEqual(level, 0.5, "cometd stays at 0.5 with or without federation: \(line)")

        // comet-bridge's unit verifies too; it alone has a network, and is hardened otherwise.
        var bridge = try String(contentsOf: root.appendingPathComponent("systemd/comet-bridge.service"), encoding: .utf8)
        bridge = bridge.replacingOccurrences(of: "/usr/local/bin/comet-bridge", with: Daemon.executable("comet-bridge").path)
        // The verifier resolves User= and runs man for Documentation=: an account every Debian
        // machine has stands in for comet-bridge, and the page is not installed here.
        bridge = bridge.replacingOccurrences(of: "User=comet-bridge", with: "User=daemon").replacingOccurrences(of: "Group=comet-bridge", with: "Group=daemon")
        bridge = bridge.replacingOccurrences(of: "Documentation=man:comet-bridge(8)\n", with: "")
        let bridgeUnit = directory.appendingPathComponent("comet-bridge.service")
        try bridge.write(to: bridgeUnit, atomically: true, encoding: .utf8)
        let verified = try runTool(analyze, ["verify", bridgeUnit.path], absolute: true)
        XCTAssertEqual(verified.status, 0, verified.stderr)
        XCTAssertEqual(verified.stderr, "", "systemd-analyze verify has remarks on comet-bridge.service")
        let opened = try runTool(analyze, ["security", "--offline=true", bridgeUnit.path], absolute: true)
        XCTAssertTrue(opened.stdout.contains("Service may allocate Internet sockets"), opened.stdout)
        XCTAssertFalse(opened.stdout.contains("Service may allocate packet sockets"))
        let openedLine = try XCTUnwrap(opened.stdout.split(separator: "\n").first { $0.contains("Overall exposure level") })
        let openedLevel = try XCTUnwrap(Double(openedLine.split(separator: ":").last!.split(separator: " ").first!))
        XCTAssertLessThanOrEqual(openedLevel, 2.0, String(openedLine))
    }
}

/// cometd's logs: plain lines unless stderr is the journal stream; refusals are logged.
final class LoggingTests: XCTestCase {
    func testPlainLinesWhenStderrIsNotTheJournalAndRefusalsAreLogged() async throws {
        // JOURNAL_STREAM naming another file than stderr: plain lines with a timestamp.
        let daemon = try Daemon(environment: ["JOURNAL_STREAM": "1:1"])
        defer { daemon.stop() }
        let client = try await CometClient.connect(to: daemon.socketPath)
        do {
            _ = try await client.subscribe("no-such-channel")
            XCTFail("refused")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .noSuchChannel)
        }
        await client.close()
        for _ in 0..<100 where !daemon.log.contains("request refused") { usleep(20_000) }
        let line = daemon.log.split(separator: "\n").first { $0.contains("request refused") }
        XCTAssertNotNil(line, daemon.log)
        XCTAssertTrue(line?.contains("code=NO_SUCH_CHANNEL") ?? false, daemon.log)
        XCTAssertTrue(line?.first?.isNumber ?? false, "a timestamp first: \(line ?? "")")

        // Acknowledging a site subscription (as `comet listen --count` does) sends nothing to refuse.
        let producerClient = try await CometClient.connect(to: daemon.socketPath)
        let producer = try await producerClient.create("site")
        let reader = try await CometClient.connect(to: daemon.socketPath)
        let subscription = try await reader.subscribe("site")
        try await producer.push("m")
        subscription.acknowledge(through: 1)
        try await reader.ping()
        XCTAssertFalse(daemon.log.contains("only private channels take acknowledgements"), daemon.log)
        await reader.close()
        await producerClient.close()
    }
}
