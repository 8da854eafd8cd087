import CometWire
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A channel's ring file mapped read-only (docs/PROTOCOL.md §6.23, docs/RESTARTS.md "Ring file"):
/// messages are copied out of it with the check that makes a torn copy impossible.
package final class MappedRing: @unchecked Sendable {  // immutable after init; the mapping is read-only
    private let base: UnsafeRawPointer
    private let length: Int
    private let capacity: UInt64
    private let size: UInt64
    private let data: Int
    /// A protected reader's position page (docs/PROTOCOL.md §6.23), mapped read-write: how far it
    /// read goes there, and the daemon's request for an ACK comes from there.
    private let position: UnsafeMutableRawPointer?
    private static let positionLength = 4096, atRead = 0, atWanted = 64

    /// Header offsets (native byte order, as the daemon writes them).
    private static let magic: UInt64 = 0x474e_5254_454d_4f43
    private static let atCapacity = 16, atDataSize = 24, atFirst = 104, atLast = 112, header = 4096

    /// Maps `descriptor` (closed by the caller), and `positionDescriptor` when the daemon gave
    /// one; nil when the file is not a ring this client understands. Nothing in the file is
    /// trusted before it is checked.
    package init?(descriptor: Int32, positionDescriptor: Int32 = -1) {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return nil }
        let length = Int(info.st_size)
        guard length >= 2 * Self.header,
            let mapped = mmap(nil, length, PROT_READ, MAP_SHARED, descriptor, 0), mapped != MAP_FAILED
        else { return nil }
        let base = UnsafeRawPointer(mapped)
        let capacity = base.loadUnaligned(fromByteOffset: Self.atCapacity, as: UInt64.self)
        let size = base.loadUnaligned(fromByteOffset: Self.atDataSize, as: UInt64.self)
        let index = (capacity &* 16 &+ 4095) & ~UInt64(4095)
        guard base.loadUnaligned(as: UInt64.self) == Self.magic, capacity > 0, capacity <= 1 << 26, size >= 4096,
            size & (size - 1) == 0, UInt64(Self.header) + index + size == UInt64(length)
        else {
            munmap(mapped, length)
            return nil
        }
        var page: UnsafeMutableRawPointer?
        if positionDescriptor >= 0 {
            guard fstat(positionDescriptor, &info) == 0, Int(info.st_size) >= Self.positionLength,
                let mappedPage = mmap(nil, Self.positionLength, PROT_READ | PROT_WRITE, MAP_SHARED, positionDescriptor, 0),
                mappedPage != MAP_FAILED
            else {
                munmap(mapped, length)
                return nil
            }
            page = mappedPage
        }
        self.base = base
        self.length = length
        self.capacity = capacity
        self.size = size
        self.data = Self.header + Int(index)
        self.position = page
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), length)
        if let position { munmap(position, Self.positionLength) }
    }

    /// Says in the position page that every message before `next` was read; true when the daemon
    /// also wants an ACK (a producer waits). The fence pairs with the daemon's between its request
    /// and its second look: one of the two sees the other. False without a page.
    package func say(readUpTo next: UInt64) -> Bool {
        guard let position else { return false }
        atomicMemoryFence(ordering: .releasing)
        position.storeBytes(of: next, toByteOffset: Self.atRead, as: UInt64.self)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return position.load(fromByteOffset: Self.atWanted, as: UInt64.self) != 0
    }

    /// What reading one message found.
    package enum Read {
        case message([UInt8])
        /// The message was evicted (or could have been while it was copied): `first` is the
        /// oldest one the ring keeps.
        case overtaken(first: UInt64)
        /// This file does not hold it yet: the ring moved to another file (a ticket is coming).
        case notHere
    }

    /// A `u64` of the header the daemon publishes with release order, loaded with acquire order
    /// (the load, then a fence: no later read of the ring moves above it).
    private func load(_ offset: Int) -> UInt64 {
        let value = base.advanced(by: offset).assumingMemoryBound(to: UInt64.self).pointee
        atomicMemoryFence(ordering: .acquiring)
        return value
    }

    /// Message `sequence`: copied, then checked against `first` again.
    package func read(_ sequence: UInt64) -> Read {
        guard sequence <= load(Self.atLast) else { return .notHere }
        var first = load(Self.atFirst)
        guard sequence >= first else { return .overtaken(first: first) }
        let entry = Self.header + Int((sequence - 1) % capacity) * 16
        let offset = base.loadUnaligned(fromByteOffset: entry, as: UInt64.self)
        let count = UInt64(base.loadUnaligned(fromByteOffset: entry + 8, as: UInt32.self))
        let at = offset & (size - 1)
        let whole = at + count <= size
        let bytes = whole ? [UInt8](UnsafeRawBufferPointer(start: base + data + Int(at), count: Int(count))) : []
        atomicMemoryFence(ordering: .acquiring)
        first = load(Self.atFirst)
        guard whole, sequence >= first else { return .overtaken(first: max(first, sequence + 1)) }
        return .message(bytes)
    }
}

extension MappedRing {
    /// RING on a connection of its own (no HELLO): the descriptor `ticket` stands for, mapped.
    /// Blocking, for at most `timeout` seconds: call it off the event loop.
    /// - Throws: `CometError` (`.badToken`: the ticket is spent or superseded) or
    ///   `ConnectionError` when the socket fails or the answer is not a ring.
    package static func fetch(path: String, ticket: UInt64, timeout: Int32 = 5) throws -> MappedRing {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ConnectionError(.lost, "no socket for RING: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ConnectionError(.unreachable, "the socket path is too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw ConnectionError(.unreachable, "RING: \(String(cString: strerror(errno)))") }
        var frame = ByteBuffer()
        Request(id: 1, .ring(ticket: ticket)).encode(into: &frame)
        let request = Array(frame.readableBytesView)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            throw ConnectionError(.lost, "RING could not be sent: \(String(cString: strerror(errno)))")
        }
        // The answer, its descriptors (the ring, then a position page) with its first bytes.
        var ring: Int32 = -1
        var page: Int32 = -1
        defer {
            if ring >= 0 { close(ring) }
            if page >= 0 { close(page) }
        }
        let decoder = FrameDecoder()
        var input = ByteBuffer()
        while true {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, timeout * 1000) == 1 else { throw ConnectionError(.lost, "cometd did not answer RING in \(timeout) s") }
            var chunk = [UInt8](repeating: 0, count: 256)
            var control = [UInt8](repeating: 0, count: 64)
            let (count, controlLength) = chunk.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var message = msghdr()
                        message.msg_iov = vectorPointer
                        message.msg_iovlen = 1
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlBytes.count
                        let n = recvmsg(fd, &message, Int32(MSG_CMSG_CLOEXEC))
                        return (n, Int(message.msg_controllen))
                    }
                }
            }
            if count < 0, errno == EINTR || errno == EAGAIN { continue }
            guard count > 0 else { throw ConnectionError(.lost, "cometd closed the RING connection without an answer") }
            if ring < 0, controlLength >= 20 {
                // struct cmsghdr { size_t len; int level; int type; } then the descriptors.
                control.withUnsafeBytes { raw in
                    guard raw.load(fromByteOffset: 8, as: Int32.self) == SOL_SOCKET,
                        raw.load(fromByteOffset: 12, as: Int32.self) == Int32(SCM_RIGHTS)
                    else { return }
                    let passed = (min(raw.load(fromByteOffset: 0, as: Int.self), controlLength) - 16) / 4
                    for i in 0..<passed {
                        let descriptor = raw.load(fromByteOffset: 16 + 4 * i, as: Int32.self)
                        if ring < 0 {
                            ring = descriptor
                        } else if page < 0 {
                            page = descriptor
                        } else {
                            close(descriptor)
                        }
                    }
                }
            }
            input.writeBytes(chunk[..<count])
            let frame: ByteBuffer?
            do { frame = try decoder.nextFrame(from: &input) } catch {
                throw ConnectionError(.protocolViolation, "cometd answered RING with a malformed frame")
            }
            guard let body = frame else { continue }
            switch try? ServerFrame.decode(body: body) {
            case .ok(_, var body):
                let reply = try? RingReply(from: &body)
                let wantsPage = (reply?.positionLength ?? 0) > 0
                guard ring >= 0, !wantsPage || page >= 0, let mapped = MappedRing(descriptor: ring, positionDescriptor: wantsPage ? page : -1) else {
                    throw ConnectionError(.protocolViolation, "cometd's answer to RING carried no ring this client can read")
                }
                return mapped
            case .error(_, let code, let message):
                throw CometError(code: code, message: message)
            default:
                throw ConnectionError(.protocolViolation, "cometd answered RING with an unexpected frame")
            }
        }
    }
}
