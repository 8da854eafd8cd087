import CometChannels
import CometServer
import CometWire
import NIOCore

/// What a simulated peer reads, checked against what was sent and pushed.
extension Simulation {
    func read(_ peer: SimPeer) throws(SimulationFailure) {
        let limit: Int
        switch peer.readMode {
        case .slow(let n): limit = n
        default: limit = .max
        }
        peer.socket.peerReads(upTo: limit, into: &peer.received)
        let decoder = FrameDecoder(maxFrameSize: UInt32.max)
        while true {
            let body: ByteBuffer?
            do {
                body = try decoder.nextFrame(from: &peer.received)
            } catch {
                throw fail("peer \(peer.id) got a frame it cannot split: \(error)")
            }
            guard let body else { break }
            let frame: ServerFrame
            do {
                frame = try ServerFrame.decode(body: body)
            } catch {
                throw fail("peer \(peer.id) got a malformed frame: \(error)")
            }
            try handle(frame, peer)
        }
        try readRings(peer)
        if !peer.socket.isOpen, peer.socket.toPeerBytes == 0, !peer.ended {
            peer.ended = true
            if let unanswered = peer.outstanding.first(where: { $0.key != 0 }), peer.alwaysReads, !peer.sentGarbage {
                throw fail("peer \(peer.id) (\(peer.readMode), uid \(peer.uid), half-closed: \(peer.doneSending)) was disconnected with request \(unanswered.key) (\(unanswered.value.kind)) unanswered and no error")
            }
        }
        pump()
    }

    func handle(_ frame: ServerFrame, _ peer: SimPeer) throws(SimulationFailure) {
        if peer.sentGarbage {
            // Random bytes may have made requests it does not know of: only the end is checked.
            if case .error(0, _, _) = frame {
                peer.ended = true
                peer.outstanding = [:]
            }
            return
        }
        switch frame {
        // A subscription whose connection closed before it could map its ring: how it ends is not checked.
        case .full(let sub, _) where peer.readings[sub]?.cutOff == true,
            .closed(let sub, _) where peer.readings[sub]?.cutOff == true,
            .reset(let sub, _) where peer.readings[sub]?.cutOff == true,
            .failed(let sub, _, _) where peer.readings[sub]?.cutOff == true:
            peer.readings[sub] = nil
        case .ringAdvanced(let sub, _, _, _, _, _) where peer.readings[sub]?.cutOff == true,
            .ringDetached(let sub, _) where peer.readings[sub]?.cutOff == true,
            .message(let sub, _, _) where peer.readings[sub]?.cutOff == true:
            break
        case .ok(let id, var body):
            guard let sent = peer.outstanding.removeValue(forKey: id) else {
                if peer.sentGarbage { return }
                throw fail("peer \(peer.id) got an answer to request \(id), which it did not send or was answered")
            }
            report.requestsAnswered += 1
            try answered(sent.kind, body: &body, peer)
        case .error(let id, let code, let message):
            if id == 0 {
                peer.ended = true
                peer.outstanding = [:]
                return
            }
            guard let sent = peer.outstanding.removeValue(forKey: id) else {
                if peer.sentGarbage { return }
                throw fail("peer \(peer.id) got an error for request \(id), which it did not send: \(code) \(message)")
            }
            // A refused numbered push uses no number: the next push takes it (those sent behind
            // it meanwhile are refused with OUT_OF_ORDER).
            if case .push(let channel, _, let number?) = sent.kind, code != .outOfOrder {
                peer.produced[channel]?.nextNumber = number
            }
            report.requestsAnswered += 1
        case .message(let sub, let sequence, let payload):
            guard let reading = peer.readings[sub] else {
                throw fail("peer \(peer.id) got message \(sequence) for subscription \(sub), which it does not hold")
            }
            guard reading.ring == nil else {
                throw fail("peer \(peer.id) got MESSAGE \(sequence) on subscription \(sub), which reads its ring (no RING_DETACHED)\(reading.mappedState)")
            }
            // Detached from its ring: what it read there may come again over the socket.
            if reading.wasMapped, let expected = reading.expected, sequence < expected { return }
            try accept(sequence, payload, sub, peer)
        case .full(let sub, let first):
            try drainRing(sub, peer)
            guard let reading = peer.readings.removeValue(forKey: sub) else {
                throw fail("peer \(peer.id) got FULL for subscription \(sub), which it does not hold")
            }
            if let expected = reading.expected, first < expected {
                throw fail("peer \(peer.id) got FULL at \(first) though it was handed everything before \(expected)")
            }
            report.fulls += 1
        case .closed(let sub, let last):
            try drainRing(sub, peer)
            guard let reading = peer.readings.removeValue(forKey: sub) else {
                throw fail("peer \(peer.id) got CLOSED for subscription \(sub), which it does not hold")
            }
            if let expected = reading.expected, expected != last + 1 {
                throw fail("peer \(peer.id) subscription \(sub): CLOSED after \(last) but it read up to \(expected - 1)\(reading.mappedState)")
            }
        case .started(let sub, _, let next, _):
            guard var reading = peer.readings[sub], reading.expected == nil else {
                throw fail("peer \(peer.id) got STARTED for subscription \(sub), which does not wait")
            }
            reading.expected = next
            peer.readings[sub] = reading
        case .reset(let sub, _), .failed(let sub, _, _):
            guard peer.readings.removeValue(forKey: sub) != nil else {
                throw fail("peer \(peer.id) got an end for subscription \(sub), which it does not hold")
            }
        case .ended(let channel, _, _):
            peer.produced[channel]?.closed = true
        case .offer, .pull:
            break
        case .ringAdvanced(let sub, let last, let ticket, let report, let held, let newest):
            try ringAdvanced(sub, last: last, ticket: ticket, report: report, held: held, newest: newest, peer)
        case .ringDetached(let sub, let next):
            try ringDetached(sub, next: next, peer)
        }
    }

    /// Message `sequence` of `sub`, from the socket or the ring: checked against what was pushed.
    func accept(_ sequence: UInt64, _ payload: ByteBuffer, _ sub: UInt32, _ peer: SimPeer) throws(SimulationFailure) {
        var payload = payload
        guard var reading = peer.readings[sub] else {
            throw fail("peer \(peer.id) got message \(sequence) for subscription \(sub), which it does not hold")
        }
        guard let expected = reading.expected else {
            throw fail("peer \(peer.id) got message \(sequence) on subscription \(sub) before it started")
        }
        guard let (instance, counter) = payload.readMultipleIntegers(as: (UInt64, UInt64).self) else {
            throw fail("peer \(peer.id) got a payload the simulator did not push")
        }
        // A newest channel's reader may skip to the latest value; any other reads every one.
        guard sequence == expected || (sequence > expected && newestInstances.contains(instance)) else {
            throw fail("peer \(peer.id) subscription \(sub) ('\(reading.name)'): got \(sequence), expected \(expected) (a gap or a repeat)")
        }
        if let seen = reading.instance, seen != instance {
            throw fail("peer \(peer.id) subscription \(sub): messages of two incarnations of '\(reading.name)'")
        }
        guard counter > reading.lastCounter else {
            throw fail("peer \(peer.id) subscription \(sub): message \(sequence) out of push order")
        }
        try verify(instance: instance, sequence: sequence, counter: counter)
        reading.instance = instance
        reading.lastCounter = counter
        reading.expected = sequence + 1
        peer.readings[sub] = reading
        report.messagesRead += 1
    }

    func answered(_ kind: Outstanding.Kind, body: inout ByteBuffer, _ peer: SimPeer) throws(SimulationFailure) {
        do {
            switch kind {
            case .hello:
                let reply = try HelloReply(from: &body)
                peer.maxFrameSize = Int(reply.maxFrameSize)
            case .create(let name, let newest):
                let reply = try CreateReply(from: &body)
                if newest { newestInstances.insert(nextInstance) }
                peer.produced[reply.channel] = Produced(name: name, instance: nextInstance, numbered: nextInstance % 2 == 0)
                ledger[nextInstance] = []
                nextInstance += 1
            case .push(let channel, let counters, let number):
                let reply = try PushReply(from: &body)
                guard var produced = peer.produced[channel] else { return }
                try record(instance: produced.instance, first: reply.firstSequence, counters: counters, count: Int(reply.count))
                if let number {
                    for i in 0..<UInt64(counters.count) { produced.sequences[number + i] = reply.firstSequence + i }
                    // Recent ones are enough to resend.
                    if produced.sequences.count > 256 { produced.sequences = produced.sequences.filter { $0.key + 128 >= number } }
                    peer.produced[channel] = produced
                }
            case .resend(let channel, let count, let expected):
                let reply = try PushReply(from: &body)
                guard reply.firstSequence == expected, reply.count == UInt32(count) else {
                    throw fail("peer \(peer.id): a resend to channel \(channel) was answered \(reply.firstSequence)+\(reply.count), expected \(expected)+\(count)")
                }
                report.resendsSkipped += 1
            case .subscribe(let name, let mapped, let returning):
                let reply = try SubscribeReply(from: &body)
                peer.readings[reply.subscription] = Reading(
                    name: name, expected: reply.waiting ? nil : reply.nextSequence, askedMapped: mapped, askedReturn: returning)
            case .unsubscribe(let sub):
                peer.readings[sub] = nil
            case .close(let channel):
                peer.produced[channel]?.closed = true
            case .list, .listFrom:
                let reply = try ListReply(from: &body)
                if reply.more, let last = reply.channels.last, peer.outstanding.count < 16, !peer.doneSending {
                    peer.send(.listFrom(name: last.name, scope: last.scope), .listFrom, now: now)
                }
            case .sessions, .stats, .ping, .garbage, .ack:
                break
            }
        } catch {
            throw fail("peer \(peer.id) could not read the answer to \(kind): \(error)")
        }
    }

    /// A producer learnt the numbers of its push: they follow the channel's last, one each.
    func record(instance: UInt64, first: UInt64, counters: [UInt64], count: Int) throws(SimulationFailure) {
        guard count == counters.count else { throw fail("a push of \(counters.count) was answered with \(count) numbers") }
        var numbers = ledger[instance] ?? []
        // Numbers of one incarnation are handed out in push order, without gaps.
        guard first == UInt64(numbers.count) + 1 else {
            throw fail("channel incarnation \(instance): a push got \(first), expected \(numbers.count + 1)")
        }
        numbers.append(contentsOf: counters)
        ledger[instance] = numbers
        if var pending = unverified[instance] {
            for (offset, counter) in counters.enumerated() {
                let sequence = first + UInt64(offset)
                if let seen = pending.removeValue(forKey: sequence), seen != counter {
                    throw fail("channel incarnation \(instance): message \(sequence) read as push \(seen), pushed as \(counter)")
                }
            }
            unverified[instance] = pending.isEmpty ? nil : pending
        }
    }

    func verify(instance: UInt64, sequence: UInt64, counter: UInt64) throws(SimulationFailure) {
        if let numbers = ledger[instance], sequence <= UInt64(numbers.count) {
            guard numbers[Int(sequence - 1)] == counter else {
                throw fail("channel incarnation \(instance): message \(sequence) read as push \(counter), pushed as \(numbers[Int(sequence - 1)])")
            }
        } else if (unverified[instance]?.count ?? 0) < 100_000 {
            unverified[instance, default: [:]][sequence] = counter
        }
    }
}
