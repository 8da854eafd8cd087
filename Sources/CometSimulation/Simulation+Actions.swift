import CometChannels
import CometServer
import CometWire
import NIOCore

/// What a simulated peer does at its step: requests, random bytes, leaving.
extension Simulation {
    func act(_ peer: SimPeer) {
        guard !peer.ended, !peer.doneSending else {
            if !peer.ended, rng.chance(0.05) { disconnect(peer) }
            return
        }
        // Leaving: disconnect, half-close, or die mid-frame.
        if rng.chance(0.01) { return disconnect(peer) }
        if rng.chance(0.003) {
            peer.doneSending = true
            peer.socket.peerShutsWrite()
            return
        }
        if rng.chance(0.002) {
            peer.sendRaw([0, 0, 0, 40, 0x03, 0, 0, 0])
            return disconnect(peer)
        }
        if rng.chance(0.002) { return garbage(peer) }
        guard peer.handshaken, peer.outstanding.count < 16 else { return }
        let open = peer.produced.filter { !$0.value.closed }.map(\.key).sorted()
        let roll = rng.next() % 100
        switch roll {
        case 0..<35 where !open.isEmpty:
            push(peer, to: open.randomElement(using: &rng)!, count: rng.chance(0.3) ? 2 + Int(rng.next() % 63) : 1)
        case 35..<45:
            let long = rng.chance(0.3)
            let name = long ? Self.longNames.randomElement(using: &rng)! : Self.shortNames.randomElement(using: &rng)!
            let size = UInt32(rng.next() % 60)
            let kind: ChannelKind = rng.chance(0.1) ? .newest : .buffered
            peer.send(.create(name: name, kind: kind, size: size), .create(name: name, newest: kind == .newest), now: now)
        case 45..<60:
            subscribe(peer)
        case 60..<63 where !peer.readings.isEmpty:
            let sub = peer.readings.keys.sorted().randomElement(using: &rng)!
            peer.send(.unsubscribe(subscription: sub), .unsubscribe(sub), now: now)
        case 63..<68:
            peer.send(.list, .list, now: now)
        case 68..<71:
            peer.send(.sessions, .sessions, now: now)
        case 71..<73:
            peer.send(.stats, .stats, now: now)
        case 73..<75 where !open.isEmpty:
            let channel = open.randomElement(using: &rng)!
            peer.send(.close(channel: channel), .close(channel), now: now)
        case 75..<77:
            // A request with a bad value (answered with an error, the connection goes on).
            peer.send(.subscribe(name: "bad name!", position: .next, epoch: 0, wait: false), .subscribe(name: "bad name!", mapped: false), now: now)
        default:
            peer.send(.ping, .ping, now: now)
        }
    }

    func push(_ peer: SimPeer, to channel: UInt64, count: Int) {
        guard var produced = peer.produced[channel] else { return }
        if produced.numbered, rng.chance(0.15), let resend = resendRange(produced, count: count) {
            // A resend of messages the channel has: payloads with counter 0, which no reader may see.
            var payloads: [ByteBuffer] = []
            for _ in 0..<resend.count {
                var payload = peer.channel.allocator.buffer(capacity: 16)
                payload.writeMultipleIntegers(produced.instance, UInt64(0))
                payloads.append(payload)
            }
            peer.send(
                .pushNumbered(channel: channel, number: resend.number, payloads: MessageBatch(payloads)),
                .resend(channel: channel, count: resend.count, expected: resend.first), now: now)
            return
        }
        var counters: [UInt64] = []
        var payloads: [ByteBuffer] = []
        let padding = rng.chance(0.2) ? Int(rng.next() % 4000) / count : Int(rng.next() % 64)
        for _ in 0..<count {
            var payload = peer.channel.allocator.buffer(capacity: 16 + padding)
            payload.writeMultipleIntegers(produced.instance, produced.nextCounter)
            payload.writeRepeatingByte(0x61, count: padding)
            counters.append(produced.nextCounter)
            produced.nextCounter += 1
            payloads.append(payload)
        }
        var number: UInt64?
        if produced.numbered {
            number = produced.nextNumber
            produced.nextNumber += UInt64(count)
        }
        peer.produced[channel] = produced
        let operation: Request.Operation =
            if let number { .pushNumbered(channel: channel, number: number, payloads: MessageBatch(payloads)) }
            else if count == 1 { .push(channel: channel, payload: payloads[0]) }
            else { .pushBatch(channel: channel, payloads: MessageBatch(payloads)) }
        peer.send(operation, .push(channel: channel, counters: counters, number: number), now: now)
    }

    /// Up to `count` consecutive numbers the channel took (their answers came), from a random
    /// recent one: (first number, its sequence number, how many).
    func resendRange(_ produced: Produced, count: Int) -> (number: UInt64, first: UInt64, count: Int)? {
        guard let number = produced.sequences.keys.randomElement(using: &rng), let first = produced.sequences[number] else { return nil }
        var n = 1
        while n < count, let next = produced.sequences[number + UInt64(n)], next == first + UInt64(n) { n += 1 }
        return (number, first, n)
    }

    func subscribe(_ peer: SimPeer) {
        let name = rng.chance(0.2) ? Self.longNames.randomElement(using: &rng)! : Self.shortNames.randomElement(using: &rng)!
        let position: SubscribePosition
        switch rng.next() % 4 {
        case 0: position = .next
        case 1: position = .oldest
        case 2: position = .from(1 + rng.next() % 400)
        default: position = .last(rng.next() % 30)
        }
        let owner: UInt32? = rng.chance(0.1) ? Self.uids.randomElement(using: &rng)! : nil
        // Two in five read the ring mapped (docs/PROTOCOL.md §6.23), as the clients do by default.
        let mapped = rng.chance(0.4)
        // Most of them take their ring back after a detach, as the clients of 0.9.2 do.
        let returning = mapped && rng.chance(0.75)
        peer.send(
            .subscribe(name: name, position: position, epoch: 0, wait: rng.chance(0.4), owner: owner, mapped: mapped, returning: returning),
            .subscribe(name: name, mapped: mapped, returning: returning), now: now)
    }

    func garbage(_ peer: SimPeer) {
        var bytes: [UInt8] = []
        for _ in 0..<(1 + Int(rng.next() % 40)) { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
        if rng.chance(0.5) {
            // A well-formed length around a random body.
            let body = bytes
            bytes = [0, 0, 0, UInt8(body.count)] + body
        }
        peer.sendRaw(bytes)
        peer.sentGarbage = true
        // Then it stops sending: whatever the bytes were, the daemon answers what it can and
        // ends the connection (an ERROR with request id 0, or a close after the half-close).
        peer.doneSending = true
        peer.socket.peerShutsWrite()
        peer.outstanding[0] = Outstanding(kind: .garbage, sentAt: now)
    }

    func disconnect(_ peer: SimPeer) {
        peer.doneSending = true
        peer.ended = true
        peer.channel.close(promise: nil)
        loop.run()
    }
}
