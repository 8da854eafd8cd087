import Foundation
import XCTest

/// The habits users bring from other command-line tools: --version, -s, usage status 64, closed
/// pipes, --timeout, bytes on stdin, --json, errors in plain words.
final class CLIConventionTests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws { daemon = try Daemon() }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    func testVersionAndUsageErrors() throws {
        let version = try runTool("comet", ["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertTrue(version.stdout.hasPrefix("comet 0.9.2"), version.stdout)
        let daemonVersion = try runTool("cometd", ["--version"])
        XCTAssertTrue(daemonVersion.stdout.hasPrefix("cometd 0.9.2"), daemonVersion.stdout)
        let badSession = try runTool("comet", ["push", "x", "--session", "not-hex", "-s", daemon.socketPath, "m"])
        XCTAssertEqual(badSession.status, 64, "a usage error, even when found after parsing")
        XCTAssertTrue(badSession.stderr.contains("--session takes a hex session id"), badSession.stderr)
        let help = try runTool("comet", ["listen", "--help"])
        let words = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(words.contains("(default: next)"), help.stdout)
        XCTAssertFalse(help.stdout.contains("StartOption"), help.stdout)
    }

    func testSocketOptionShortAndBeforeTheSubcommand() throws {
        let push = try runTool("comet", ["-s", daemon.socketPath, "push", "early", "m", "--linger", "0"])
        XCTAssertEqual(push.status, 0, push.stderr)
        let list = try runTool("comet", ["--socket=\(daemon.socketPath)", "channels"])
        XCTAssertEqual(list.status, 0, list.stderr)
        let short = try runTool("comet", ["channels", "-s", daemon.socketPath])
        XCTAssertEqual(short.status, 0, short.stderr)
    }

    func testNoDaemonIsSaidInPlainWords() throws {
        let result = try runTool("comet", ["channels", "-s", daemon.directory.appendingPathComponent("nobody.sock").path])
        XCTAssertEqual(result.status, 69)
        XCTAssertTrue(result.stderr.contains("No such file or directory"), result.stderr)
        XCTAssertFalse(result.stderr.contains("descriptor"), "no NIO internals: \(result.stderr)")
    }

    func testListenExitsQuietlyWhenItsOutputCloses() throws {
        let producer = try runToolInBackground(["push", "piped", "--linger", "30", "-s", daemon.socketPath] + (1...50).map { "m\($0)" })
        defer { producer.terminate() }
        try waitUntilChannel("piped")
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        let comet = Daemon.executable("comet").path
        shell.arguments = ["-c", "'\(comet)' listen piped --from oldest -s '\(daemon.socketPath)' | head -1; echo status=${PIPESTATUS:-$?}"]
        let out = Pipe()
        shell.standardOutput = out
        let started = Date()
        try shell.run()
        // No message comes after head has gone: the listener notices its closed output by itself.
        shell.waitUntilExit()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(output.hasPrefix("m1\n"), output)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "listen | head -1 ends")
    }

    func testListenTimeout() throws {
        let idle = try runTool("comet", ["listen", "quiet", "--wait", "--timeout", "0.3", "-s", daemon.socketPath])
        XCTAssertEqual(idle.status, 0, "a timeout without --count is the end asked for")
        let counted = try runTool("comet", ["listen", "quiet", "--wait", "--timeout", "0.3", "--count", "2", "-s", daemon.socketPath])
        XCTAssertEqual(counted.status, 5, "--count not reached in time")
    }

    func testStandardInputIsPushedAsBytes() throws {
        let producer = Process()
        producer.executableURL = Daemon.executable("comet")
        producer.arguments = ["push", "bytes", "--linger", "30", "-s", daemon.socketPath]
        let input = Pipe()
        producer.standardInput = input
        producer.standardOutput = FileHandle.nullDevice
        try producer.run()
        defer { producer.terminate() }
        input.fileHandleForWriting.write(Data([0x63, 0x61, 0x66, 0xE9, 0x0A, 0xFF, 0x00, 0x0A]))
        try input.fileHandleForWriting.close()
        try waitUntilChannel("bytes")
        let listener = Process()
        listener.executableURL = Daemon.executable("comet")
        listener.arguments = ["listen", "bytes", "--from", "oldest", "--count", "2", "--raw", "-s", daemon.socketPath]
        let out = Pipe()
        listener.standardOutput = out
        try listener.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        listener.waitUntilExit()
        XCTAssertEqual([UInt8](data), [0x63, 0x61, 0x66, 0xE9, 0x0A, 0xFF, 0x00, 0x0A], "Latin-1 and NUL bytes as they were")
    }

    func testJSONTables() throws {
        let producer = try runToolInBackground(["push", "listed", "--linger", "30", "-s", daemon.socketPath, "a", "b"])
        defer { producer.terminate() }
        try waitUntilChannel("listed")
        let channels = try runTool("comet", ["channels", "--json", "-s", daemon.socketPath])
        let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(channels.stdout.utf8)) as? [[String: Any]])
        let entry = try XCTUnwrap(parsed.first { $0["name"] as? String == "listed" })
        XCTAssertEqual(entry["last_sequence"] as? Int, 2)
        XCTAssertEqual(entry["kind"] as? String, "buffered")
        XCTAssertEqual(entry["owner_uid"] as? Int, Int(getuid()))
        let sessions = try runTool("comet", ["sessions", "--json", "-s", daemon.socketPath])
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(sessions.stdout.utf8)) as? [[String: Any]], sessions.stdout)
    }

    // MARK: Helpers

    func runToolInBackground(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = Daemon.executable("comet")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    func waitUntilChannel(_ name: String) throws {
        for _ in 0..<200 {
            if try runTool("comet", ["channels", "-s", daemon.socketPath]).stdout.split(separator: "\n").contains(where: { $0.hasPrefix(name + " ") }) {
                return
            }
            usleep(25_000)
        }
        throw DaemonFailure("channel \(name) never appeared")
    }
}
