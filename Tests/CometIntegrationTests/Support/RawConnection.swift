import CometWire
import Glibc
import NIOCore

/// A blocking socket that speaks raw frames: for tests that must send what no client library would,
/// or must not read.
final class RawConnection: @unchecked Sendable {
    let fd: CInt
    private var input = ByteBuffer()
    private var nextID: UInt32 = 1

    struct Failure: Error { let message: String }

    init(_ path: String, receiveBuffer: Int? = nil) throws {
        fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(message: "socket failed") }
        if var size = receiveBuffer.map(CInt.init) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        }
        guard RawConnection.connect(fd, path) == 0 else {
            close(fd)
            throw Failure(message: "connect failed: errno \(errno)")
        }
    }

    deinit { close(fd) }

    static func connect(_ fd: CInt, _ path: String) -> CInt {
        withUnixAddress(path) { Glibc.connect(fd, $0, $1) }
    }

    static func canConnect(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        return connect(fd, path) == 0
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Sends a request with a fresh id and returns the id.
    @discardableResult
    func send(_ operation: Request.Operation) -> UInt32 {
        let id = nextID
        nextID += 1
        var buffer = ByteBuffer()
        Request(id: id, operation).encode(into: &buffer)
        send(Array(buffer.readableBytesView))
        return id
    }

    func hello() throws -> HelloReply {
        let id = send(.hello(versions: [CometProtocol.version]))
        var body = try expectOK(id)
        return try HelloReply(from: &body)
    }

    /// The next frame, or `nil` when the server closed the connection.
    func read(timeout: Int32 = 10_000) throws -> ServerFrame? {
        while true {
            if let body = try FrameDecoder().nextFrame(from: &input) { return try ServerFrame.decode(body: body) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, timeout) == 1 else { throw Failure(message: "timed out waiting for a frame") }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return nil }
            input.writeBytes(chunk[..<n])
        }
    }

    /// Reads until the answer to `id`, which must be OK; events before it are skipped.
    func expectOK(_ id: UInt32) throws -> ByteBuffer {
        while let frame = try read() {
            switch frame {
            case .ok(id, let body): return body
            case .error(let rid, let code, let message) where rid == id || rid == 0:
                throw Failure(message: "request \(id) failed: \(code) \(message)")
            default: continue
            }
        }
        throw Failure(message: "closed before answering \(id)")
    }

    /// Reads until the answer to `id`, which must be an error; returns its code.
    func expectError(_ id: UInt32) throws -> ErrorCode {
        while let frame = try read() {
            switch frame {
            case .error(let rid, let code, _) where rid == id: return code
            case .ok(id, _): throw Failure(message: "request \(id) succeeded")
            default: continue
            }
        }
        throw Failure(message: "closed before answering \(id)")
    }

    /// True when the server closes the connection (after any frames still queued).
    func closedByServer() throws -> Bool {
        while try read() != nil {}
        return true
    }
}

/// Calls `body` with a `sockaddr_un` for `path` (what bind and connect take).
func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// A listening Unix stream socket at `path`.
func listeningSocket(_ path: String, backlog: CInt = 16) throws -> CInt {
    let fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
    guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0, listen(fd, backlog) == 0 else {
        close(fd)
        throw RawConnection.Failure(message: "cannot listen on \(path): errno \(errno)")
    }
    return fd
}
