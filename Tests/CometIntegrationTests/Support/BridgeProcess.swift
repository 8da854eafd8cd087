import Foundation
import XCTest

/// A real `comet-bridge` for one cometd, with a configuration text, stopped by PID.
final class BridgeProcess: @unchecked Sendable {
    let configFile: URL
    let logFile: URL
    let socketPath: String
    private(set) var process: Process?
    /// A command the bridge runs under (e.g. `ip netns exec NAME`), or none.
    let launcher: [String]

    /// Writes `config` beside the daemon's socket and starts the bridge.
    init(config: String, socketPath: String, launcher: [String] = [], start: Bool = true) throws {
        self.launcher = launcher
        let directory = try Daemon.temporaryDirectory()
        configFile = directory.appendingPathComponent("bridge.conf")
        logFile = directory.appendingPathComponent("bridge.log")
        self.socketPath = socketPath
        try config.write(to: configFile, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        if start { try self.start() }
    }

    func start() throws {
        let p = Process()
        let arguments = ["--config", configFile.path, "--socket", socketPath, "--scan-interval", "0.1", "--log-level", "debug"]
        if launcher.isEmpty {
            p.executableURL = Daemon.executable("comet-bridge")
            p.arguments = arguments
        } else {
            p.executableURL = URL(fileURLWithPath: launcher[0])
            p.arguments = Array(launcher.dropFirst()) + [Daemon.executable("comet-bridge").path] + arguments
        }
        var env = ProcessInfo.processInfo.environment
        env["COMET_SOCKET"] = nil
        p.environment = env
        let handle = try FileHandle(forWritingTo: logFile)
        handle.seekToEndOfFile()
        p.standardError = handle
        p.standardOutput = handle
        try p.run()
        process = p
    }

    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// SIGTERM (SIGKILL with `hard`), then the exit status.
    @discardableResult
    func stop(hard: Bool = false) -> Int32 {
        guard let process else { return 0 }
        if process.isRunning {
            kill(process.processIdentifier, hard ? SIGKILL : SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        self.process = nil
        return process.terminationStatus
    }

    deinit {
        if let process, process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
