import Foundation
import XCTest

/// A real `cometd` on a socket in a temporary directory, stopped by PID.
final class Daemon: @unchecked Sendable {
    let directory: URL
    let socketPath: String
    let process: Process
    let stderrFile: URL

    /// Where SwiftPM put the executables built with the tests.
    static var productsDirectory: URL {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if FileManager.default.fileExists(atPath: beside.appendingPathComponent("cometd").path) { return beside }
        return Bundle.main.bundleURL
    }

    static func executable(_ name: String) -> URL { productsDirectory.appendingPathComponent(name) }

    /// The release build of cometd (`make test` builds it): attacks are measured against what
    /// ships, not against a debug build ten times slower.
    static var releaseDaemon: URL {
        let release = productsDirectory.deletingLastPathComponent().appendingPathComponent("release/cometd")
        return FileManager.default.isExecutableFile(atPath: release.path) ? release : executable("cometd")
    }

    static func temporaryDirectory() throws -> URL {
        // Short paths: sun_path holds 108 bytes.
        let url = URL(fileURLWithPath: "/tmp/comet-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Starts `cometd --socket DIR/comet.sock` (or the given launcher around it) and waits until it answers.
    /// - Parameter bindOwnSocket: with a launcher, still pass `--socket` (a launcher that only
    ///   changes limits, not one that passes a socket).
    /// - Parameter executable: the daemon binary (default: the one built with the tests).
    /// - Parameter socket: the socket path (default: one in a fresh directory); a restart names the old one.
    init(
        arguments: [String] = [], environment: [String: String] = [:], launcher: [String] = [], bindOwnSocket: Bool = false,
        waitForSocket: Bool = true, executable: URL = Daemon.executable("cometd"), socket: String? = nil
    ) throws {
        directory = try Daemon.temporaryDirectory()
        socketPath = socket ?? directory.appendingPathComponent("comet.sock").path
        stderrFile = directory.appendingPathComponent("cometd.log")
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        process = Process()
        let cometd = executable.path
        if launcher.isEmpty {
            process.executableURL = URL(fileURLWithPath: cometd)
            process.arguments = ["--socket", socketPath] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: launcher[0])
            process.arguments = Array(launcher.dropFirst()) + [cometd] + (bindOwnSocket ? ["--socket", socketPath] : []) + arguments
        }
        var env = ProcessInfo.processInfo.environment
        env["COMET_SOCKET"] = nil
        env["NOTIFY_SOCKET"] = nil
        env.merge(environment) { $1 }
        process.environment = env
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        try process.run()
        if waitForSocket { try waitUntilAnswering() }
    }

    func waitUntilAnswering(timeout: TimeInterval = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if RawConnection.canConnect(socketPath) { return }
            guard process.isRunning else { throw DaemonFailure("cometd exited early:\n\(log)") }
            usleep(20_000)
        }
        throw DaemonFailure("cometd did not answer within \(timeout)s:\n\(log)")
    }

    var log: String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }

    /// SIGTERM, then wait for the exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

struct DaemonFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a built executable to completion and returns its status and output.
func runTool(_ executable: String, _ arguments: [String], stdin: String? = nil, absolute: Bool = false) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = absolute ? URL(fileURLWithPath: executable) : Daemon.executable(executable)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    let input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

extension XCTestCase {
    /// A policy file holding `text` for a daemon's `--policy`, removed when the test ends.
    func policyFile(_ text: String) throws -> String {
        let path = "/tmp/comet-policy-\(UUID().uuidString.prefix(8)).conf"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}
