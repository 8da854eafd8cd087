import CometState
import CometWire
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Mapped readers' descriptors: RING, the first and only request of a connection, is answered
/// with the ring file a ticket stands for, as a read-only descriptor passed with the OK frame.
extension Broker {
    func handOverRing(_ requestID: UInt32, ticket: UInt64, _ conn: ConnectionState) {
        guard let file = mappedRings.redeem(ticket, uid: conn.uid) else {
            logLimiter.log(logger, .notice, kind: "ring", "RING with a ticket this user was not given", metadata: ["uid": "\(conn.uid)"])
            fail(conn, WireError(.badToken, "no ring descriptor waits under ticket \(ticket) for uid \(conn.uid)"), log: false)
            return
        }
        var frame = ByteBuffer()
        ServerFrame.writeOK(requestID: requestID, into: &frame) { RingReply(length: UInt64(file.length)).write(to: &$0) }
        let descriptor = file.readOnlyDescriptor()
        guard descriptor >= 0 else {
            let reason = String(cString: strerror(errno))
            logger.warning("cannot make a read-only ring descriptor", metadata: ["error": "\(reason)"])
            fail(conn, WireError(.internalError, "cannot hand over the ring: \(reason)"), log: false)
            return
        }
        defer { close(descriptor) }
        guard let cookie = SocketCookies.cookie(of: conn.context.channel), let socket = SocketCookies.descriptor(withCookie: cookie),
            Self.send(frame, with: descriptor, over: socket)
        else {
            fail(conn, WireError(.internalError, "cannot pass a descriptor on this connection"), log: false)
            return
        }
        closeAfterFlush(conn)
    }

    /// Writes `frame` whole on `socket` (nothing else queued on it: the connection's first
    /// answer) with `descriptor` passed alongside (SCM_RIGHTS).
    static func send(_ frame: ByteBuffer, with descriptor: Int32, over socket: Int32) -> Bool {
        var bytes = Array(frame.readableBytesView)
        let space = 24  // CMSG_SPACE(sizeof(int)) on 64-bit Linux
        var control = [UInt8](repeating: 0, count: space)
        return bytes.withUnsafeMutableBytes { data in
            control.withUnsafeMutableBytes { raw in
                let header = raw.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                header.pointee.cmsg_len = 20  // CMSG_LEN(sizeof(int))
                header.pointee.cmsg_level = SOL_SOCKET
                header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                raw.storeBytes(of: descriptor, toByteOffset: 16, as: Int32.self)
                var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                return withUnsafeMutablePointer(to: &vector) { iov in
                    var message = msghdr()
                    message.msg_iov = iov
                    message.msg_iovlen = 1
                    message.msg_control = raw.baseAddress
                    message.msg_controllen = space
                    return sendmsg(socket, &message, Int32(MSG_NOSIGNAL)) == data.count
                }
            }
        }
    }
}

extension SocketCookies {
    /// The descriptor of this process whose socket has `cookie`, if any.
    static func descriptor(withCookie cookie: UInt64) -> Int32? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd != own else { continue }
            var found: UInt64 = 0
            var length = socklen_t(MemoryLayout<UInt64>.size)
            if getsockopt(fd, SOL_SOCKET, option, &found, &length) == 0, found == cookie { return fd }
        }
        return nil
    }
}
