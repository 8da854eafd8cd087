import FoundationEssentials
import CSystemd
import CometWire
import Glibc

/// Where the standalone daemon binds, and the checks around it.
struct SocketPath {
    let path: String

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `--socket`, else `$COMET_SOCKET`, else `/run/comet/comet.sock` for root and
    /// `$XDG_RUNTIME_DIR/comet/comet.sock` for anyone else.
    static func resolve(option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SocketPath {
        if let option, !option.isEmpty { return SocketPath(path: option) }
        guard let path = CometProtocol.defaultSocketPath(environment: environment, isRoot: geteuid() == 0) else {
            throw Failure(description: "XDG_RUNTIME_DIR is not set; name a socket with --socket PATH or COMET_SOCKET")
        }
        return SocketPath(path: path)
    }

    /// Creates the directory and clears a stale socket file. Refuses to touch a socket that a live
    /// daemon answers on, or a path that is not a socket.
    func prepare() throws {
        guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            throw Failure(description: "socket path is too long for a Unix socket: \(path)")
        }
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? ""
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            } catch {
                throw Failure(description: "cannot create \(directory): \(error)")
            }
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw Failure(description: "\(path) exists and is not a socket; not removing it")
        }
        if Self.answers(path) {
            throw Failure(description: "another daemon is serving \(path); not taking its socket")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw Failure(description: "cannot remove stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Makes the socket reachable by every local user: site channels are for anyone who knows the
    /// name (systemd/cometd.socket sets the same mode).
    func openPermissions() {
        _ = chmod(path, 0o666)
    }

    /// Whether something accepts connections on the socket at `path`.
    static func answers(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0
    }
}
