import Glibc

/// A datagram socket standing in for systemd's NOTIFY_SOCKET: collects sd_notify messages.
final class NotifySocket: @unchecked Sendable {
    let fd: CInt
    let path: String

    init(path: String) throws {
        self.path = path
        let fd = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue), 0)
        self.fd = fd
        guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0 else { throw DaemonFailure("cannot bind notify socket: errno \(errno)") }
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Datagrams until one contains `line` (returned with everything seen), or a timeout.
    func waitFor(_ line: String, timeout: Int32 = 15_000) throws -> [String] {
        var seen: [String] = []
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, timeout) == 1 else { throw DaemonFailure("no \(line) among \(seen)") }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { continue }
            let message = String(decoding: buffer[..<n], as: UTF8.self)
            seen.append(message)
            if message.split(separator: "\n").contains(where: { $0 == line }) { return seen }
        }
    }
}
