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
    /// current file, asking for a report when a producer waits for one. Returns the new cursor and
    /// what the daemon now knows of the reader.
    func announceRing(
        of channel: SiteChannel<ByteRing>, to id: UInt32, _ mapped: MappedReading, from cursor: UInt64, _ conn: ConnectionState,
        into out: inout ByteBuffer
    ) -> (cursor: UInt64, mapped: MappedReading) {
        let last = channel.lastSequence
        var reading = mapped
        var ticket: UInt64 = 0
        if mapped.generation != channel.ring.generation {
            ticket = mappedRings.issue(channel.ring.file, uid: conn.uid, connection: conn.id, subscription: id)
            reading.generation = channel.ring.generation
        }
        // A protected reader without a position page says how far it read every quarter ring, so
        // that it stays on the ring, and at once when a producer waits for it (the push would
        // evict what it did not say). One with a page writes it there, and reports when the page
        // asks (`PositionPage.want`).
        let lagging = last >= cursor && last >= mapped.read + UInt64(max(1, channel.size / 4))
        let report = mapped.held && mapped.position == nil && (mapped.reportNow || lagging) && last >= mapped.read
        if last >= cursor || ticket != 0 || report {
            ServerFrame.ringAdvanced(
                subscription: id, last: last, ticket: ticket, reportRead: report, held: mapped.held, newest: channel.keepsNewestOnly
            ).encode(into: &out)
        }
        if report { reading.reportAsked = last }
        reading.reportNow = false
        return (max(cursor, last + 1), reading)
    }

    /// A detached reader that caught up takes its ring back (`RingReturn`), from its cursor: it is
    /// protected from there as when it subscribed, and counts its detaches on.
    func giveRingBack(_ channel: SiteChannel<ByteRing>, to sub: Subscription, _ back: RingReturn) -> MappedReading {
        channel.protectedFloor = min(channel.protectedFloor, sub.cursor)
        logger.debug("a detached mapped reader caught up: back to its ring", metadata: [
            "channel": "\(sub.name)", "next": "\(sub.cursor)", "detaches": "\(back.detaches)",
        ])
        return MappedReading(held: true, read: sub.cursor, returns: true, attachedAt: uptime(), detachesBefore: back.detaches)
    }

    /// RING: the descriptor a ticket stands for (and, for a protected reader, a new position page,
    /// read-write), then the connection closes.
    func handOverRing(_ requestID: UInt32, ticket: UInt64, _ conn: ConnectionState) {
        guard let (file, holder) = mappedRings.redeem(ticket, uid: conn.uid, now: uptime()) else {
            logLimiter.log(logger, .notice, kind: "ring", "RING with a ticket this user was not given", metadata: ["uid": "\(conn.uid)"])
            fail(conn, WireError(.badToken, "no ring descriptor waits under ticket \(ticket) for uid \(conn.uid)"), log: false)
            return
        }
        // A protected reader gets a new page with each ring: from there it says how far it read
        // there (the page replaces the one it had; it starts where the reader is known to be).
        var pageDescriptor: Int32 = -1
        defer { if pageDescriptor >= 0 { close(pageDescriptor) } }
        if let reader = connections[holder.connection], let sub = reader.subscriptions[holder.subscription],
            let mapped = sub.mapped, mapped.held
        {
            let start = mapped.readUpTo(announcedUpTo: sub.cursor)
            if let (page, descriptor) = mappedRings.pages.make(uid: reader.uid, start: start) {
                // A producer waiting for the old page's reader waits on the new one.
                if mapped.position?.wanted == true { _ = page.want() }
                reader.subscriptions[holder.subscription]?.mapped?.read = start
                reader.subscriptions[holder.subscription]?.mapped?.position = page
                pageDescriptor = descriptor
            }
        }
        var frame = ByteBuffer()
        ServerFrame.writeOK(requestID: requestID, into: &frame) {
            RingReply(length: UInt64(file.length), positionLength: pageDescriptor >= 0 ? UInt64(PositionPage.length) : 0).write(to: &$0)
        }
        let descriptor = file.readOnlyDescriptor()
        guard descriptor >= 0 else {
            let reason = String(cString: strerror(errno))
            logger.warning("cannot make a read-only ring descriptor", metadata: ["error": "\(reason)"])
            fail(conn, WireError(.internalError, "cannot hand over the ring: \(reason)"), log: false)
            return
        }
        defer { close(descriptor) }
        let descriptors = pageDescriptor >= 0 ? [descriptor, pageDescriptor] : [descriptor]
        let passed: Bool
        if let passDescriptors {
            passed = passDescriptors(frame, descriptors)
        } else if let cookie = conn.socketCookie, let socket = socketDescriptors.descriptor(for: cookie) {
            passed = Self.send(frame, with: descriptors, over: socket)
        } else {
            passed = false
        }
        guard passed else {
            fail(conn, WireError(.internalError, "cannot pass a descriptor on this connection"), log: false)
            return
        }
        closeAfterFlush(conn)
    }

    /// Writes `frame` whole on `socket` (nothing else queued on it: the connection's first
    /// answer) with `descriptors` (one or two) passed alongside (SCM_RIGHTS).
    static func send(_ frame: ByteBuffer, with descriptors: [Int32], over socket: Int32) -> Bool {
        var bytes = Array(frame.readableBytesView)
        let length = 16 + 4 * descriptors.count  // CMSG_LEN(n * sizeof(int)) on 64-bit Linux
        let space = (length + 7) & ~7  // CMSG_SPACE
        var control = [UInt8](repeating: 0, count: space)
        return bytes.withUnsafeMutableBytes { data in
            control.withUnsafeMutableBytes { raw in
                let header = raw.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                header.pointee.cmsg_len = length
                header.pointee.cmsg_level = SOL_SOCKET
                header.pointee.cmsg_type = Int32(SCM_RIGHTS)
                for (i, descriptor) in descriptors.enumerated() { raw.storeBytes(of: descriptor, toByteOffset: 16 + 4 * i, as: Int32.self) }
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
