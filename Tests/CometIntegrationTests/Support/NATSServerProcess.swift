import Foundation
import XCTest

/// A real `nats-server -js` on 127.0.0.1 and a free port, with a private store directory,
/// started and stopped by PID. Restartable on the same port (memory streams are then gone).
final class NATSServerProcess: @unchecked Sendable {
    let port: UInt16
    let directory: URL
    private(set) var process: Process?

    var url: String { "nats://127.0.0.1:\(port)" }

    static var available: Bool {
        ["/usr/bin/nats-server", "/usr/sbin/nats-server"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }

    init(port: UInt16? = nil) throws {
        guard Self.available else { throw XCTSkip("nats-server is not installed (scripts/ensure-deps test installs it)") }
        self.port = try port ?? Self.freePort()
        directory = try Daemon.temporaryDirectory()
    }

    /// A TCP port nothing listens on right now.
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw DaemonFailure("no free port") }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Starts the server and waits until it accepts TCP connections.
    func start() throws {
        process = try Self.launch(["-js", "-sd", directory.appendingPathComponent("js").path, "-a", "127.0.0.1", "-p", "\(port)"], log: directory, port: port)
    }

    /// Runs nats-server with `arguments`, its output appended to `log`/nats.log, and waits until
    /// it accepts TCP connections on `port`.
    static func launch(_ arguments: [String], log directory: URL, port: UInt16) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FileManager.default.isExecutableFile(atPath: "/usr/bin/nats-server") ? "/usr/bin/nats-server" : "/usr/sbin/nats-server")
        p.arguments = arguments
        let log = directory.appendingPathComponent("nats.log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        p.standardError = handle
        p.standardOutput = handle
        try p.run()
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if accepts(port) { return p }
            guard p.isRunning else { throw DaemonFailure("nats-server exited early") }
            usleep(20_000)
        }
        throw DaemonFailure("nats-server did not listen on \(port)")
    }

    static func accepts(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// SIGKILL (nothing flushed; memory streams lost), then wait.
    func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    deinit {
        kill()
        try? FileManager.default.removeItem(at: directory)
    }
}
