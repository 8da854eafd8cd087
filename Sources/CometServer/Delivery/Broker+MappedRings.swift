import CometChannels
import CometState
import CometWire
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Mapped readers' descriptors: RING, the first and only request of a connection, is answered
/// with the ring file a ticket stands for, as a read-only descriptor passed with the OK frame.
extension Broker {
    /// Tells mapped reader `id`, whose first message not announced is `cursor`, how far the ring
    /// goes (RING_ADVANCED, once per delivery pass), with a ticket when it has not got the ring's
    /// current file. Returns the new cursor and the file generation it now has a ticket for.
    func announceRing(
        of channel: SiteChannel<ByteRing>, to id: UInt32, _ mapped: MappedReading, from cursor: UInt64, _ conn: ConnectionState,
        into out: inout ByteBuffer
    ) -> (cursor: UInt64, generation: UInt64?) {
        let last = channel.lastSequence
        var ticket: UInt64 = 0
        var generation: UInt64?
        if mapped.generation != channel.ring.generation {
            ticket = mappedRings.issue(channel.ring.file, uid: conn.uid, connection: conn.id, subscription: id)
            generation = channel.ring.generation
        }
        // A protected reader says how far it read every quarter ring, so that it stays on the ring
        // (it is detached only if a push would evict what it did not say).
        let report = mapped.held && last >= cursor && last >= mapped.read + UInt64(max(1, channel.size / 4))
        if last >= cursor || ticket != 0 {
            ServerFrame.ringAdvanced(
                subscription: id, last: last, ticket: ticket, reportRead: report, held: mapped.held, newest: channel.keepsNewestOnly
            ).encode(into: &out)
        }
        return (max(cursor, last + 1), generation)
    }

    /// RING: the descriptor a ticket stands for, then the connection closes.
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
