import Foundation
import XCTest

/// The `comet` tool against a real daemon: output and documented exit codes.
final class CLITests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws { daemon = try Daemon(arguments: ["--log-level", "debug", "--session-grace", "1"]) }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    var socket: [String] { ["--socket", daemon.socketPath] }

    /// Starts `comet` in the background; returns the process and its stdout pipe.
    func start(_ arguments: [String]) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = Daemon.executable("comet")
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        return (process, out)
    }

    func testListenWaitsThenPrintsEachMessageAndExitsClosed() throws {
        let (listener, out) = try start(["listen", "alerts", "--wait", "--show-seq"] + socket)
        try waitForWaiter()
        let push = try runTool("comet", ["push", "alerts", "disk full", "two\nlines", "tab\there"] + socket)
        XCTAssertEqual(push.status, 0, push.stderr)
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        listener.waitUntilExit()
        XCTAssertEqual(output, "1\tdisk full\n2\ttwo\\nlines\n3\ttab\\there\n")
        XCTAssertEqual(listener.terminationStatus, 3, "closed")
    }

    func testPushFromStandardInputAndReplay() throws {
        let (producer, _) = try start(["push", "lines", "--linger", "30"] + socket + ["first"])
        defer { producer.terminate() }
        try waitUntilChannel("lines")
        let replay = try runTool("comet", ["listen", "lines", "--from", "oldest", "--count", "1"] + socket)
        XCTAssertEqual(replay.status, 0)
        XCTAssertEqual(replay.stdout, "first\n")

        let (listener, out) = try start(["listen", "stdin-lines", "--wait", "--raw"] + socket)
        try waitForWaiter()
        let push = try runTool("comet", ["push", "stdin-lines", "--show-seq"] + socket, stdin: "alpha\nbeta\\raw\ngamma\n")
        XCTAssertEqual(push.status, 0, push.stderr)
        XCTAssertEqual(push.stdout, "1\n2\n3\n")
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        listener.waitUntilExit()
        XCTAssertEqual(output, "alpha\nbeta\\raw\ngamma\n")
    }

    func testLastKAndChannelsTable() throws {
        let (producer, _) = try start(["push", "tail", "--size", "3", "--linger", "30"] + socket + ["a", "b", "c", "d"])
        defer { producer.terminate() }
        try waitUntilChannel("tail")
        let last2 = try runTool("comet", ["listen", "tail", "--from", "-2", "--count", "2", "--show-seq"] + socket)
        XCTAssertEqual(last2.stdout, "3\tc\n4\td\n")
        let table = try runTool("comet", ["channels"] + socket)
        XCTAssertEqual(table.status, 0)
        let lines = table.stdout.split(separator: "\n")
        XCTAssertEqual(lines.first?.split(separator: " ", omittingEmptySubsequences: true).prefix(7),
                       ["NAME", "SCOPE", "OWNER", "SIZE", "BUFFERED", "SUBSCRIBERS", "LAST"])
        let row = try XCTUnwrap(lines.first { $0.hasPrefix("tail ") }).split(separator: " ", omittingEmptySubsequences: true)
        XCTAssertEqual(Array(row.prefix(8)), ["tail", "site", "root", "3", "3", "0", "4", "buffered"])
    }

    func testExitCodes() throws {
        let (producer, _) = try start(["push", "small", "--size", "2", "--linger", "30"] + socket + ["1", "2", "3", "4"])
        defer { producer.terminate() }
        try waitUntilChannel("small")

        let full = try runTool("comet", ["listen", "small", "--from", "1"] + socket)
        XCTAssertEqual(full.status, 2, "fell behind: \(full.stderr)")
        XCTAssertTrue(full.stderr.contains("full"), full.stderr)

        let missing = try runTool("comet", ["listen", "absent"] + socket)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("NO_SUCH_CHANNEL"), missing.stderr)

        let badName = try runTool("comet", ["push", "bad name", "x"] + socket)
        XCTAssertEqual(badName.status, 1)

        let nobody = try runTool("comet", ["channels", "--socket", daemon.directory.appendingPathComponent("none.sock").path])
        XCTAssertEqual(nobody.status, 69)
        XCTAssertTrue(nobody.stderr.contains("cometd"), nobody.stderr)

        let usage = try runTool("comet", ["listen"] + socket)
        XCTAssertEqual(usage.status, 64)
    }

    /// Waits until the daemon logs a subscription waiting for its channel.
    func waitForWaiter() throws {
        for _ in 0..<400 {
            if daemon.log.contains("subscription waits for its channel") { return }
            usleep(25_000)
        }
        throw DaemonFailure("the listener never subscribed:\n\(daemon.log)")
    }

    func waitUntilChannel(_ name: String) throws {
        for _ in 0..<200 {
            if try runTool("comet", ["channels"] + socket).stdout.split(separator: "\n").contains(where: { $0.hasPrefix(name + " ") }) {
                return
            }
            usleep(25_000)
        }
        throw DaemonFailure("channel \(name) never appeared")
    }
}

extension CLITests {
    func testPrivateChannelThroughTheCLIAndSessionsTable() throws {
        let file = daemon.directory.appendingPathComponent("listener.session").path
        let (process, out, id) = try startPrivateListener("notes", count: 2, extra: ["--session-file", file])
        let attrs = try FileManager.default.attributesOfItem(atPath: file)
        XCTAssertEqual((attrs[.posixPermissions] as? NSNumber)?.intValue, 0o600, "the token file is private")
        XCTAssertTrue(try String(contentsOfFile: file, encoding: .utf8).hasPrefix(id + ":"))

        let table = try runTool("comet", ["sessions"] + socket)
        XCTAssertTrue(table.stdout.split(separator: "\n").contains { $0.hasPrefix(id + " ") }, table.stdout)
        XCTAssertFalse(table.stdout.contains(try String(contentsOfFile: file, encoding: .utf8).split(separator: ":")[1].prefix(32)),
                       "tokens are never listed")

        let push = try runTool("comet", ["push", "notes", "--session", id, "first", "second"] + socket)
        XCTAssertEqual(push.status, 0, push.stderr)
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(output, "first\nsecond\n")
        XCTAssertEqual(process.terminationStatus, 0)

        let wrong = try runTool("comet", ["push", "notes", "--session", "12345", "x"] + socket)
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("NO_SUCH_SESSION"), wrong.stderr)
    }
}

extension CLITests {
    /// Starts `comet listen --private NAME` and returns it with the session id it printed.
    func startPrivateListener(_ name: String, count: Int, extra: [String] = []) throws -> (Process, Pipe, String) {
        let process = Process()
        process.executableURL = Daemon.executable("comet")
        process.arguments = ["listen", name, "--private", "--count", "\(count)"] + extra + socket
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        var line = ""
        while !line.hasSuffix("\n") {
            let byte = err.fileHandleForReading.readData(ofLength: 1)
            guard !byte.isEmpty else { break }
            line += String(decoding: byte, as: UTF8.self)
        }
        return (process, out, String(line.dropFirst("session ".count).dropLast()))
    }

    func testUnlimitedProducerRunsItsCommandAtEachPull() throws {
        let counter = daemon.directory.appendingPathComponent("pulls").path
        let (listener, out, session) = try startPrivateListener("mailcount", count: 3)
        let producer = Process()
        producer.executableURL = Daemon.executable("comet")
        producer.arguments = ["push", "mailcount", "--session", session, "--unlimited",
                              "--command", "echo x >> \(counter); wc -l < \(counter)"] + socket
        producer.standardError = FileHandle.nullDevice
        try producer.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        listener.waitUntilExit()
        XCTAssertEqual(output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }, ["1", "2", "3"])
        usleep(300_000)
        let runs = try String(contentsOfFile: counter, encoding: .utf8).split(separator: "\n").count
        XCTAssertLessThanOrEqual(runs, 4, "the command runs only when a pull asks (at most one ahead of the last read)")
        // The listener left; its session ends after the grace period and the producer exits.
        producer.waitUntilExit()
        XCTAssertEqual(producer.terminationStatus, 0)
    }

    func testNewestFromTheCLI() throws {
        let (producer, _) = try start(["push", "level", "--newest", "--linger", "30"] + socket + ["10", "20", "30"])
        defer { producer.terminate() }
        try waitUntilChannel("level")
        let current = try runTool("comet", ["listen", "level", "--count", "1", "--show-seq"] + socket)
        XCTAssertEqual(current.stdout, "3\t30\n", "a newest channel gives its current value at once")
        let table = try runTool("comet", ["channels"] + socket)
        let row = try XCTUnwrap(table.stdout.split(separator: "\n").first { $0.hasPrefix("level ") })
        XCTAssertTrue(row.contains(" newest "), String(row))
    }
}
