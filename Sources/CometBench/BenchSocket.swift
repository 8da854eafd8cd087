import CometWire
import Glibc
import NIOCore

/// A blocking client socket for the benchmark: raw frames, no client library, so that the
/// figures measure the daemon and the protocol, not a client's conveniences.
/// Used from one thread at a time; handed between threads by the scenarios.
final class BenchSocket: @unchecked Sendable {
    let fd: CInt
    private var nextID: UInt32 = 1
    /// Received bytes not yet parsed.
    var buffer: [UInt8] = []
    var start = 0

    /// `receiveBuffer`: SO_RCVBUF, for readers meant to fall behind.
    init(path: String, receiveBuffer: Int? = nil) throws {
        fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer.map(CInt.init) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<CInt>.size))
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw BenchFailure("cannot connect to \(path): errno \(errno)")
        }
    }

    deinit { close(fd) }

    func write(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, CInt(MSG_NOSIGNAL))
            if n <= 0 { fatalError("send failed: errno \(errno)") }
            offset += n
        }
    }

    func write(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { write($0) }
    }

    @discardableResult
    func send(_ operation: Request.Operation) -> UInt32 {
        let id = nextID
        nextID += 1
        var out = ByteBuffer()
        Request(id: id, operation).encode(into: &out)
        write(out)
        return id
    }

    /// Reads at least one more chunk into `buffer`; false on end of stream.
    /// Reads into a reused scratch area and appends what came: no allocation or zeroing per read.
    func fill() -> Bool {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 1 << 20 {
            buffer.removeFirst(start)
            start = 0
        }
        let want = 262_144
        let old = buffer.count
        if buffer.capacity < old + want { buffer.reserveCapacity(max(buffer.capacity * 2, old + want)) }
        var n = 0
        scratch.withUnsafeMutableBytes { raw in
            n = recv(fd, raw.baseAddress!, min(raw.count, want), 0)
        }
        if n > 0 { buffer.append(contentsOf: scratch[0..<n]) }
        return n > 0
    }

    /// Receive area reused by every read.
    private var scratch = [UInt8](repeating: 0, count: 262_144)

    /// Reads and drops whatever is already buffered in the socket.
    func drainWithoutBlocking() {
        var scratch = [UInt8](repeating: 0, count: 65536)
        while recv(fd, &scratch, scratch.count, CInt(MSG_DONTWAIT)) > 0 {}
    }

    /// The next whole frame body as (opcode, body range in `buffer`), reading as needed.
    func nextFrame() -> (UInt8, Range<Int>)? {
        while true {
            if buffer.count - start >= 4 {
                let length = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
                if buffer.count - start >= 4 + length {
                    let body = (start + 4)..<(start + 4 + length)
                    start += 4 + length
                    return (buffer[body.lowerBound], body)
                }
            }
            guard fill() else { return nil }
        }
    }

    func u32(at i: Int) -> UInt32 {
        UInt32(buffer[i]) << 24 | UInt32(buffer[i + 1]) << 16 | UInt32(buffer[i + 2]) << 8 | UInt32(buffer[i + 3])
    }

    func u64(at i: Int) -> UInt64 { UInt64(u32(at: i)) << 32 | UInt64(u32(at: i + 4)) }

    /// Waits for the OK of `id` and returns its body bytes.
    func ok(_ id: UInt32) throws -> ByteBuffer {
        while let (op, body) = nextFrame() {
            if op == Opcode.ok.rawValue, u32(at: body.lowerBound + 1) == id {
                return ByteBuffer(bytes: buffer[(body.lowerBound + 5)..<body.upperBound])
            }
            if op == Opcode.error.rawValue, u32(at: body.lowerBound + 1) == id || u32(at: body.lowerBound + 1) == 0 {
                throw BenchFailure("request \(id) failed with code \(UInt16(buffer[body.lowerBound + 5]) << 8 | UInt16(buffer[body.lowerBound + 6]))")
            }
        }
        throw BenchFailure("connection closed")
    }

    func handshake() throws {
        _ = try ok(send(.hello(versions: [CometProtocol.version])))
    }

    func create(_ name: String, size: UInt32) throws -> UInt64 {
        var body = try ok(send(.create(name: name, kind: .buffered, size: size)))
        return try CreateReply(from: &body).channel
    }

    func subscribe(_ name: String) throws -> UInt32 {
        var body = try ok(send(.subscribe(name: name, position: .next, epoch: 0, wait: false)))
        return try SubscribeReply(from: &body).subscription
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Monotonic nanoseconds.
func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
