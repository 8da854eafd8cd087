import Comet
import CometServer
import CometWire
import NIOCore
import NIOEmbedded

#if canImport(Glibc)
import Glibc
#endif

/// Mapped readers (docs/PROTOCOL.md §6.23): tickets redeemed with RING on a connection of their
/// own, messages read from the ring's file with the Swift client's `MappedRing`, how far they
/// read said in the position page (ACK when it asks, or when RING_ADVANCED does).
extension Simulation {
    /// What redeeming a ticket gave.
    enum RingFetch {
        case ring(MappedRing)
        /// Spent or superseded (the ring moved again, or the reader was detached): read on.
        case badToken
        case failed(String)
    }

    /// RING for `ticket` as a peer of `uid` sends it: a new connection, RING as its only request
    /// (served even when the user holds all the connections its quota allows).
    func fetchRing(_ ticket: UInt64, uid: UInt32) -> RingFetch {
        passedRing = nil
        let (channel, socket) = connect(uid: uid, pid: 1_000_000, kernelCapacity: 65536, readSize: 65536)
        var request = channel.allocator.buffer(capacity: 16)
        Request(id: 1, .ring(ticket: ticket)).encode(into: &request)
        socket.peerSends(request)
        while socket.daemonHasInput {
            guard socket.deliverToDaemon() else { break }
            loop.run()
        }
        pump()
        var answer = channel.allocator.buffer(capacity: 0)
        socket.peerReads(upTo: .max, into: &answer)
        channel.close(promise: nil)
        loop.run()
        if let (frame, descriptors) = passedRing {
            passedRing = nil
            defer { for descriptor in descriptors { close(descriptor) } }
            var bytes = frame
            guard let body = try? FrameDecoder(maxFrameSize: UInt32.max).nextFrame(from: &bytes),
                case .ok(1, var reply)? = try? ServerFrame.decode(body: body), let ring = try? RingReply(from: &reply)
            else { return .failed("the descriptors came with an answer that is not RING's OK") }
            guard (ring.positionLength == 0) == (descriptors.count == 1) else {
                return .failed("position_length \(ring.positionLength) with \(descriptors.count) descriptors")
            }
            guard let mapped = MappedRing(descriptor: descriptors[0], positionDescriptor: descriptors.count > 1 ? descriptors[1] : -1) else {
                return .failed("the descriptor is not a ring file the client can map")
            }
            return .ring(mapped)
        }
        guard let body = try? FrameDecoder(maxFrameSize: UInt32.max).nextFrame(from: &answer),
            let frame = try? ServerFrame.decode(body: body)
        else { return .failed("no answer to RING") }
        if case .error(_, .badToken, _) = frame { return .badToken }
        return .failed("RING answered \(frame)")
    }

    /// Reads the mapped rings of `peer`'s subscriptions at its pace.
    func readRings(_ peer: SimPeer) throws(SimulationFailure) {
        let budget: Int
        switch peer.readMode {
        case .slow(let bytes): budget = max(1, bytes / 64)
        default: budget = 512
        }
        for sub in peer.readings.keys.sorted() where peer.readings[sub]?.ring?.ring != nil && peer.readings[sub]?.cutOff == false {
            try readRing(sub, peer, budget: budget)
        }
    }

    /// Reads up to `budget` announced messages of `sub` from its ring, checked as MESSAGE frames
    /// are, then says how far it read: in the position page, and with ACK when the page asks
    /// (a producer waits) or RING_ADVANCED did (no page) and everything announced was read.
    func readRing(_ sub: UInt32, _ peer: SimPeer, budget: Int) throws(SimulationFailure) {
        guard var view = peer.readings[sub]?.ring, let ring = view.ring else { return }
        var used = 0
        reading: while used < budget, let expected = peer.readings[sub]?.expected, expected <= view.announced {
            switch ring.read(expected) {
            case .message(let bytes):
                peer.readings[sub]?.overtakenSince = nil
                try accept(expected, ByteBuffer(bytes: bytes), sub, peer)
                report.ringMessages += 1
                used += 1
            case .overtaken(let first) where view.newest:
                // A newest channel moved on: its latest value is what there is to read.
                peer.readings[sub]?.expected = first
            case .overtaken:
                // Protected: RING_DETACHED or FULL is on its way (checked: it comes).
                if peer.readings[sub]?.overtakenSince == nil { peer.readings[sub]?.overtakenSince = now }
                break reading
            case .notHere:
                break reading  // the ring moved to another file: its ticket follows
            }
        }
        if let expected = peer.readings[sub]?.expected {
            var due = ring.say(readUpTo: expected)
            if view.reportWanted, expected > view.announced {
                view.reportWanted = false
                due = true
            }
            if due, expected - 1 > view.acknowledged, !peer.doneSending, !peer.ended {
                view.acknowledged = expected - 1
                peer.send(.ack(subscription: sub, sequence: expected - 1), .ack, now: now)
            }
        }
        peer.readings[sub]?.ring = view
    }

    /// RING_ADVANCED: what the ring holds now, and its file when it moved.
    func ringAdvanced(_ sub: UInt32, last: UInt64, ticket: UInt64, report: Bool, held: Bool, newest: Bool, _ peer: SimPeer)
        throws(SimulationFailure)
    {
        guard var reading = peer.readings[sub], reading.askedMapped else {
            throw fail("peer \(peer.id) got RING_ADVANCED for subscription \(sub), which did not ask to read mapped")
        }
        guard held || newest else {
            throw fail("peer \(peer.id) subscription \(sub) ('\(reading.name)'): a mapped reader of a buffered channel is not protected (no HELD)")
        }
        if reading.ring == nil, reading.wasMapped {
            // Detached before: only a reader that asked for it is given its ring back, with a ticket.
            guard reading.askedReturn, ticket != 0 else {
                throw fail(
                    "peer \(peer.id) subscription \(sub) ('\(reading.name)'): RING_ADVANCED after RING_DETACHED "
                        + (reading.askedReturn ? "without a ticket" : "though it did not ask RETURN"))
            }
            self.report.returns += 1
        }
        var view = reading.ring ?? MappedReading()
        view.announced = max(view.announced, last)
        view.held = held
        view.newest = newest
        view.reportWanted = view.reportWanted || report
        if ticket != 0 {
            switch fetchRing(ticket, uid: peer.uid) {
            case .ring(let ring):
                view.ring = ring
                self.report.ringsMapped += 1
            case .badToken where !peer.socket.isOpen:
                // Its connection closed (tickets live as long as it): what it did not read yet
                // cannot be had, as a client would find before it reconnects.
                reading.cutOff = true
            case .badToken: break
            case .failed(let why): throw fail("peer \(peer.id) could not map the ring of subscription \(sub): \(why)")
            }
        }
        reading.ring = view
        reading.wasMapped = true
        peer.readings[sub] = reading
    }

    /// RING_DETACHED (possibly before any RING_ADVANCED: detached before its first delivery):
    /// served over the socket from `next`, which must not skip anything it did not read. As the
    /// Swift client, it reads no more from the ring.
    func ringDetached(_ sub: UInt32, next: UInt64, _ peer: SimPeer) throws(SimulationFailure) {
        guard var reading = peer.readings[sub], reading.askedMapped, reading.ring != nil || !reading.wasMapped else {
            throw fail("peer \(peer.id) got RING_DETACHED for subscription \(sub), which does not read a ring")
        }
        if let expected = reading.expected, next > expected {
            throw fail("peer \(peer.id) subscription \(sub) ('\(reading.name)'): detached at \(next) though it read only up to \(expected - 1)")
        }
        reading.ring = nil
        reading.overtakenSince = nil
        reading.wasMapped = true
        peer.readings[sub] = reading
        report.detaches += 1
    }

    /// A subscription ends: what its ring announced is read first (the Swift client does so too).
    func drainRing(_ sub: UInt32, _ peer: SimPeer) throws(SimulationFailure) {
        if peer.readings[sub]?.ring != nil { try readRing(sub, peer, budget: .max) }
    }
}
