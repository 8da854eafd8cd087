import Foundation
import Glibc

/// What systemd does for cometd here (used by the tests and by `comet-bench`), written from sd_notify(3), sd_listen_fds(3) and systemd's
/// FILE_DESCRIPTOR_STORE documentation, so that `make test` covers restarts on any machine:
///
/// - a listening socket it owns (the socket unit), passed to every start as LISTEN_FDS with
///   LISTEN_FDNAMES and LISTEN_PID;
/// - a NOTIFY_SOCKET receiving READY=1, STOPPING=1, FDSTORE=1 with FDNAME= and the descriptors
///   (SCM_RIGHTS), FDSTOREREMOVE=1 with FDNAME=;
/// - a restart passing the stored descriptors back after the socket, under their names.
public final class Supervisor: @unchecked Sendable {
    public let directory: URL
    public let socketPath: String
    public let notifyPath: String
    public let logPath: String
    public let executable: URL
    public let arguments: [String]
    /// Run before cometd (e.g. `taskset -c 1`), exec'ing it with the same pid.
    public let launcher: [String]
    let listener: Int32
    private let notifyFD: Int32
    private let lock = NSLock()
    private var store: [(name: String, fd: Int32)] = []
    private var notifications: [String] = []
    private var receiving = true
    private var receiver: Thread?
    public private(set) var pid: pid_t = 0
    /// Starts so far.
    public private(set) var starts = 0

    public init(arguments: [String] = [], executable: URL, launcher: [String] = []) throws {
        // Short paths: sun_path holds 108 bytes.
        directory = URL(fileURLWithPath: "/tmp/comet-sv-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.launcher = launcher
        socketPath = directory.appendingPathComponent("comet.sock").path
        notifyPath = directory.appendingPathComponent("notify").path
        logPath = directory.appendingPathComponent("cometd.log").path
        self.executable = executable
        self.arguments = arguments
        listener = try Self.listeningSocket(socketPath, backlog: 4096)
        chmod(socketPath, 0o666)
        notifyFD = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard Self.withUnixAddress(notifyPath, { bind(notifyFD, $0, $1) }) == 0 else {
            throw Failure("cannot bind the notify socket: errno \(errno)")
        }
        var size: Int32 = 4 << 20
        setsockopt(notifyFD, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        let thread = Thread { [unowned self] in self.receive() }
        receiver = thread
        thread.start()
    }

    deinit {
        if pid > 0 {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        lock.withLock { receiving = false }
        close(listener)
        for entry in store { close(entry.fd) }
        try? FileManager.default.removeItem(at: directory)
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Names of what the store holds now, with counts.
    public var stored: [String: Int] {
        lock.withLock { store.reduce(into: [:]) { $0[$1.name, default: 0] += 1 } }
    }

    public func notified(_ line: String) -> Int {
        lock.withLock { notifications.filter { $0.split(separator: "\n").contains { $0 == line } }.count }
    }

    /// Starts cometd with the socket and everything stored, and waits for READY=1.
    public func start(timeout: TimeInterval = 20, extraArguments: [String] = []) throws {
        let readyBefore = notified("READY=1")
        let passed: [(name: String, fd: Int32)] = [("comet.socket", listener)] + lock.withLock { store }
        // Out of the way first (close-on-exec), then into place from 3 on: no source is overwritten.
        let high = passed.map { fcntl($0.fd, F_DUPFD_CLOEXEC, 1000) }
        defer { high.forEach { close($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (index, fd) in high.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, Int32(3 + index)) }
        posix_spawn_file_actions_addopen(&actions, 2, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // Nothing else of the test process (pipes of other children) leaks into the daemon.
        _ = spawnAddCloseFrom(&actions, Int32(3 + passed.count))
        // LISTEN_PID is the daemon's own pid: the shell sets it and becomes cometd.
        let script = "LISTEN_PID=$$ exec \"$0\" \"$@\""
        let argv = ["/bin/sh", "-c", script] + (launcher.isEmpty ? [executable.path] : launcher + [executable.path]) + arguments + extraArguments
        var env = ProcessInfo.processInfo.environment
        env["COMET_SOCKET"] = nil
        env["NOTIFY_SOCKET"] = notifyPath
        env["LISTEN_FDS"] = "\(passed.count)"
        env["LISTEN_FDNAMES"] = passed.map(\.name).joined(separator: ":")
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var child: pid_t = 0
        let result = posix_spawn(&child, "/bin/sh", &actions, nil, cArgs, cEnv)
        guard result == 0 else { throw Failure("posix_spawn: \(result)") }
        pid = child
        starts += 1
        let deadline = Date().addingTimeInterval(timeout)
        while notified("READY=1") <= readyBefore {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                pid = 0
                throw Failure("cometd exited before READY=1 (status \(status)):\n\(log)")
            }
            guard Date() < deadline else { throw Failure("no READY=1 within \(timeout) s:\n\(log)") }
            usleep(5_000)
        }
    }

    /// Sends `signal` and waits for the exit; returns the wait status.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM, timeout: TimeInterval = 20) -> Int32 {
        guard pid > 0 else { return -1 }
        kill(pid, signal)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        while waitpid(pid, &status, WNOHANG) != pid {
            if Date() > deadline { kill(pid, SIGKILL) }
            usleep(2_000)
        }
        pid = 0
        // What it sent before it ended is in the socket's queue: let the receiver take it.
        usleep(50_000)
        return status
    }

    /// Waits for cometd to end by itself (e.g. a crash point); returns the wait status, nil if
    /// it still runs after `timeout`.
    public func waitForExit(timeout: TimeInterval = 20) -> Int32? {
        guard pid > 0 else { return nil }
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        while waitpid(pid, &status, WNOHANG) != pid {
            guard Date() < deadline else { return nil }
            usleep(2_000)
        }
        pid = 0
        usleep(50_000)
        return status
    }

    /// Stops with `signal` (as `systemctl restart` does with SIGTERM, or a crash), then starts again.
    public func restart(_ signal: Int32 = SIGTERM) throws {
        stop(signal)
        try start()
    }

    private func receive() {
        while lock.withLock({ receiving }) {
            var p = pollfd(fd: notifyFD, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) == 1 else { continue }
            var data = [UInt8](repeating: 0, count: 8192)
            var control = [UInt8](repeating: 0, count: 16 + 253 * 4)
            let (received, controlLength): (Int, Int) = data.withUnsafeMutableBytes { dataPtr in
                control.withUnsafeMutableBytes { controlPtr in
                    var iov = iovec(iov_base: dataPtr.baseAddress, iov_len: dataPtr.count)
                    return withUnsafeMutablePointer(to: &iov) { iovPtr in
                        var message = msghdr()
                        message.msg_iov = iovPtr
                        message.msg_iovlen = 1
                        message.msg_control = controlPtr.baseAddress
                        message.msg_controllen = controlPtr.count
                        let n = recvmsg(notifyFD, &message, Int32(MSG_CMSG_CLOEXEC))
                        return (n, Int(message.msg_controllen))
                    }
                }
            }
            guard received > 0 else { continue }
            let text = String(decoding: data[..<received], as: UTF8.self)
            var fds: [Int32] = []
            if controlLength >= 16 {
                control.withUnsafeBytes { raw in
                    // struct cmsghdr { size_t len; int level; int type; } then the data (one header here).
                    let length = raw.load(as: Int.self)
                    let level = raw.load(fromByteOffset: 8, as: Int32.self)
                    let type = raw.load(fromByteOffset: 12, as: Int32.self)
                    if level == SOL_SOCKET, type == Int32(SCM_RIGHTS) {
                        for i in 0..<((length - 16) / 4) { fds.append(raw.load(fromByteOffset: 16 + 4 * i, as: Int32.self)) }
                    }
                }
            }
            handle(text, fds)
        }
    }

    private func handle(_ text: String, _ fds: [Int32]) {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        lock.withLock {
            notifications.append(text)
            if fields["FDSTORE"] == "1" {
                let name = fields["FDNAME"] ?? "stored"
                for fd in fds { store.append((name, fd)) }
            } else {
                fds.forEach { close($0) }
            }
            if fields["FDSTOREREMOVE"] == "1", let name = fields["FDNAME"] {
                for entry in store where entry.name == name { close(entry.fd) }
                store.removeAll { $0.name == name }
            }
        }
    }
}

/// glibc's posix_spawn_file_actions_addclosefrom_np (2.34), which the Glibc module does not show.
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
private func spawnAddCloseFrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ from: Int32) -> Int32

extension Supervisor {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    static func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8.prefix(107))
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    static func listeningSocket(_ path: String, backlog: Int32) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        unlink(path)
        guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0, listen(fd, backlog) == 0 else {
            close(fd)
            throw Failure("cannot listen at \(path): errno \(errno)")
        }
        return fd
    }
}
