import CometChannels
import CometServer
import CometWire
import Logging
import NIOCore
import NIOEmbedded

/// A deterministic simulation of the daemon core: everything above the socket (framing,
/// dispatch, broker, delivery, accounting, flow control, sessions, timers) on one
/// `EmbeddedEventLoop` with virtual time, driven by simulated peers that do random, seeded
/// things. After every step the invariants of docs/FLOW.md are checked; the first one broken
/// ends the run with a `SimulationFailure` that names the seed and the step.
public final class Simulation {
    public struct Options: Sendable {
        public var seed: UInt64
        public var steps: Int
        /// Most peers alive at once.
        public var maxPeers = 24
        /// Steps between two drain checks (every peer leaves, everything charged must return to zero).
        public var phase = 50_000
        public var verbose = false
        /// A peer whose frames are printed.
        public var trace = -1

        public init(seed: UInt64, steps: Int) {
            self.seed = seed
            self.steps = steps
        }
    }

    /// What a run did, for the report.
    public struct Report: Sendable, CustomStringConvertible {
        public var seed: UInt64 = 0
        public var steps = 0
        public var peers = 0
        public var requestsAnswered = 0
        public var messagesRead = 0
        public var fulls = 0
        public var holds = 0
        public var invariantChecks = 0
        public var drainChecks = 0
        public var virtualSeconds = 0.0

        public var description: String {
            let simulated = Int(virtualSeconds)
            return "seed \(seed): \(steps) steps, \(peers) peers, \(requestsAnswered) answers, \(messagesRead) messages read, "
                + "\(fulls) FULL, \(holds) steps with a held producer, \(invariantChecks) invariant checks, "
                + "\(drainChecks) drain checks, \(simulated) s simulated"
        }
    }

    let options: Options
    let configuration: ServerConfiguration
    let loop = EmbeddedEventLoop()
    let broker: Broker
    var rng: SplitMix
    var peers: [SimPeer] = []
    var step = 0
    var nextPeerID = 1
    var nextInstance: UInt64 = 1
    /// Per channel incarnation, the payload counter of each sequence number (index = sequence - 1).
    var ledger: [UInt64: [UInt64]] = [:]
    /// Messages read before their producer learnt their numbers: checked when it does.
    var unverified: [UInt64: [UInt64: UInt64]] = [:]
    /// Incarnations of newest channels (their readers may skip).
    var newestInstances: Set<UInt64> = []
    var report = Report()
    /// Set by the watchdog's caller: the step in progress.
    public var onStep: ((Int) -> Void)?

    static let uids: [UInt32] = [0, 1000, 1001]
    static let shortNames = (0..<10).map { "ch\($0)" }
    static let longNames = (0..<80).map { "L\($0)." + String(repeating: "x", count: 240) }

    public init(_ options: Options) {
        self.options = options
        self.rng = SplitMix(seed: options.seed)
        var configuration = ServerConfiguration()
        var quotas = Quotas(memoryCeiling: 256 << 20, maxConnections: 64)
        quotas.perUser[.channels] = 24
        quotas.perUser[.subscriptions] = 48
        quotas.perUser[.bufferedBytes] = 4 << 20
        configuration.quotas = quotas
        configuration.registry.maxSize = 200
        // Queues scaled down (kept in the daemon's proportions) so that flow control, hand-over
        // and holds happen within a few pushes.
        configuration.outboundHighWatermark = 8 * 1024
        configuration.outboundLowWatermark = 2 * 1024
        configuration.readerQueueBound = 24 * 1024
        configuration.deliveryBudget = 8 * 1024
        configuration.deliveryPassBudget = 128 * 1024
        configuration.handOverBudget = 512 * 1024
        configuration.requestsPerTurn = 4
        // Small frames: LIST and SESSIONS answers take several pages.
        configuration.maxFrameSize = 16384
        self.configuration = configuration
        let logger = Logger(label: "comet-sim") { _ in SwiftLogNoOpLogHandler() }
        broker = Broker(eventLoop: loop, configuration: configuration, logger: logger)
        // As in cometd: work put off to the next turn waits until the loop has polled its sockets
        // (here: until the peers' bytes of this round were handed over).
        broker.observesTicks = true
        broker.start()
        loop.run()
        report.seed = options.seed
    }

    var now: UInt64 { loop.now.uptimeNanoseconds }

    /// Runs `options.steps` steps, then a final drain check.
    public func run() throws(SimulationFailure) -> Report {
        while step < options.steps {
            step += 1
            onStep?(step)
            try advance()
            if step % options.phase == 0 { try drainCheck() }
            if step % 10000 == 0, options.verbose {
                for p in peers { print("peer \(p.id) \(p.readMode) ended=\(p.ended) done=\(p.doneSending) hs=\(p.handshaken) out=\(p.outstanding.count) open=\(p.socket.isOpen) toPeer=\(p.socket.toPeerBytes) in=\(p.socket.daemonHasInput)") }
            }
        }
        try drainCheck()
        report.steps = step
        report.virtualSeconds = Double(now) / 1e9
        return report
    }

    func fail(_ message: String) -> SimulationFailure {
        SimulationFailure(seed: options.seed, step: step, steps: options.steps, message: message)
    }

    // MARK: One step

    private func advance() throws(SimulationFailure) {
        if peers.count < options.maxPeers, peers.isEmpty || rng.chance(0.03) {
            spawn()
        } else {
            // A peer that can do something (a few tries: most steps should be requests).
            for _ in 0..<4 {
                guard let peer = peers.randomElement(using: &rng) else { break }
                if peer.ended || peer.doneSending || !peer.handshaken || peer.outstanding.count >= 16 {
                    if rng.chance(0.25) {
                        act(peer)
                        break
                    }
                    continue
                }
                act(peer)
                break
            }
        }
        for peer in peers where peer.leavesAt <= step && !peer.ended {
            disconnect(peer)
        }
        pump()
        // Time goes on: a millisecond a step, now and then a jump past a grace or a timeout.
        if rng.chance(0.002) {
            loop.advanceTime(by: .milliseconds(Int64(rng.next() % 3000)))
        } else {
            loop.advanceTime(by: .milliseconds(1))
        }
        pump()
        for peer in peers where peer.reads(at: step) {
            try read(peer)
        }
        try checkInvariants()
        peers.removeAll { peer in
            peer.ended && !peer.socket.isOpen && (peer.socket.toPeerBytes == 0 || !peer.reads(at: step))
        }
    }

    /// Hands the daemon what peers sent (as far as it reads), and runs what is due.
    /// Turns of the loop: each hands the daemon what the peers sent (as far as it reads), runs
    /// what is due, and ends (`tickEnded`): what was put off to the next turn runs after the next
    /// round of socket input, as in cometd.
    private func pump() {
        for _ in 0..<8 {
            var moved = false
            for peer in peers where peer.socket.daemonHasInput {
                if peer.socket.deliverToDaemon() { moved = true }
            }
            loop.run()
            let more = broker.tickEnded()
            if !moved && !more { break }
        }
        loop.run()
    }

    private func spawn() {
        let uid = Self.uids.randomElement(using: &rng)!
        let mode: ReadMode
        switch rng.next() % 20 {
        case 0..<10: mode = .fast
        case 10..<14: mode = .slow(256 << Int(rng.next() % 7))
        case 14..<17: mode = .stalled(until: step + 100 + Int(rng.next() % 5000))
        default: mode = .never
        }
        let socket = SimulatedSocket(
            kernelCapacity: [1024, 4096, 16384].randomElement(using: &rng)!,
            highWatermark: configuration.outboundHighWatermark, lowWatermark: configuration.outboundLowWatermark,
            readSize: [512, 4096, 65536].randomElement(using: &rng)!)
        let handler = ConnectionHandler(
            broker: broker, identity: Identity(pid: Int32(nextPeerID), uid: uid, gid: uid), socketQueue: { [unowned socket] in socket.queued })
        let channel = EmbeddedChannel(handlers: [], loop: loop)
        try! channel.pipeline.syncOperations.addHandlers([socket, handler])
        channel.connect(to: try! SocketAddress(unixDomainSocketPath: "/sim/comet.sock"), promise: nil)
        channel.pipeline.read()
        let peer = SimPeer(id: nextPeerID, uid: uid, readMode: mode, channel: channel, socket: socket)
        peer.trace = peer.id == options.trace
        peer.leavesAt = step + 200 + Int(rng.next() % 20_000)
        nextPeerID += 1
        report.peers += 1
        peers.append(peer)
        if rng.chance(0.97) {
            peer.send(.hello(versions: [CometProtocol.version]), .hello, now: now)
            // Requests may follow HELLO at once (pipelined), before its answer is read.
            peer.handshaken = true
        } else {
            garbage(peer)
        }
    }

    // MARK: What a peer does

    private func act(_ peer: SimPeer) {
        guard !peer.ended, !peer.doneSending else {
            if !peer.ended, rng.chance(0.05) { disconnect(peer) }
            return
        }
        // Leaving: disconnect, half-close, or die mid-frame.
        if rng.chance(0.01) { return disconnect(peer) }
        if rng.chance(0.003) {
            if peer.trace { print("step \(step) peer \(peer.id) shuts write") }
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
            peer.send(.subscribe(name: "bad name!", position: .next, epoch: 0, wait: false), .subscribe(name: "bad name!"), now: now)
        default:
            peer.send(.ping, .ping, now: now)
        }
    }

    private func push(_ peer: SimPeer, to channel: UInt64, count: Int) {
        guard var produced = peer.produced[channel] else { return }
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
        peer.produced[channel] = produced
        let operation: Request.Operation = count == 1 ? .push(channel: channel, payload: payloads[0]) : .pushBatch(channel: channel, payloads: payloads)
        peer.send(operation, .push(channel: channel, counters: counters), now: now)
    }

    private func subscribe(_ peer: SimPeer) {
        let name = rng.chance(0.2) ? Self.longNames.randomElement(using: &rng)! : Self.shortNames.randomElement(using: &rng)!
        let position: SubscribePosition
        switch rng.next() % 4 {
        case 0: position = .next
        case 1: position = .oldest
        case 2: position = .from(1 + rng.next() % 400)
        default: position = .last(rng.next() % 30)
        }
        let owner: UInt32? = rng.chance(0.1) ? Self.uids.randomElement(using: &rng)! : nil
        peer.send(.subscribe(name: name, position: position, epoch: 0, wait: rng.chance(0.4), owner: owner), .subscribe(name: name), now: now)
    }

    private func garbage(_ peer: SimPeer) {
        var bytes: [UInt8] = []
        for _ in 0..<(1 + Int(rng.next() % 40)) { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
        if rng.chance(0.5) {
            // A well-formed length around a random body.
            let body = bytes
            bytes = [0, 0, 0, UInt8(body.count)] + body
        }
        if peer.trace { print("step \(step) peer \(peer.id) sends garbage") }
        peer.sendRaw(bytes)
        peer.sentGarbage = true
        // Then it stops sending: whatever the bytes were, the daemon answers what it can and
        // ends the connection (an ERROR with request id 0, or a close after the half-close).
        peer.doneSending = true
        peer.socket.peerShutsWrite()
        peer.outstanding[0] = Outstanding(kind: .garbage, sentAt: now)
    }

    private func disconnect(_ peer: SimPeer) {
        peer.doneSending = true
        peer.ended = true
        peer.channel.close(promise: nil)
        loop.run()
    }

    // MARK: What a peer reads

    private func read(_ peer: SimPeer) throws(SimulationFailure) {
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
        if !peer.socket.isOpen, peer.socket.toPeerBytes == 0, !peer.ended {
            peer.ended = true
            if let unanswered = peer.outstanding.first(where: { $0.key != 0 }), peer.alwaysReads, !peer.sentGarbage {
                throw fail("peer \(peer.id) (\(peer.readMode), uid \(peer.uid), half-closed: \(peer.doneSending)) was disconnected with request \(unanswered.key) (\(unanswered.value.kind)) unanswered and no error")
            }
        }
        pump()
    }

    private func handle(_ frame: ServerFrame, _ peer: SimPeer) throws(SimulationFailure) {
        if peer.id == options.trace { print("step \(step) peer \(peer.id) <- \(frame)") }
        if peer.sentGarbage {
            // Random bytes may have made requests it does not know of: only the end is checked.
            if case .error(0, _, _) = frame {
                peer.ended = true
                peer.outstanding = [:]
            }
            return
        }
        switch frame {
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
            guard peer.outstanding.removeValue(forKey: id) != nil || peer.sentGarbage else {
                throw fail("peer \(peer.id) got an error for request \(id), which it did not send: \(code) \(message)")
            }
            report.requestsAnswered += 1
        case .message(let sub, let sequence, var payload):
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
        case .full(let sub, let first):
            guard let reading = peer.readings.removeValue(forKey: sub) else {
                throw fail("peer \(peer.id) got FULL for subscription \(sub), which it does not hold")
            }
            if let expected = reading.expected, first < expected {
                throw fail("peer \(peer.id) got FULL at \(first) though it was handed everything before \(expected)")
            }
            report.fulls += 1
        case .closed(let sub, let last):
            guard let reading = peer.readings.removeValue(forKey: sub) else {
                throw fail("peer \(peer.id) got CLOSED for subscription \(sub), which it does not hold")
            }
            if let expected = reading.expected, expected != last + 1 {
                throw fail("peer \(peer.id) subscription \(sub): CLOSED after \(last) but it read up to \(expected - 1)")
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
        }
    }

    private func answered(_ kind: Outstanding.Kind, body: inout ByteBuffer, _ peer: SimPeer) throws(SimulationFailure) {
        do {
            switch kind {
            case .hello:
                let reply = try HelloReply(from: &body)
                peer.maxFrameSize = Int(reply.maxFrameSize)
            case .create(let name, let newest):
                let reply = try CreateReply(from: &body)
                if newest { newestInstances.insert(nextInstance) }
                peer.produced[reply.channel] = Produced(name: name, instance: nextInstance)
                ledger[nextInstance] = []
                nextInstance += 1
            case .push(let channel, let counters):
                let reply = try PushReply(from: &body)
                guard let instance = peer.produced[channel]?.instance else { return }
                try record(instance: instance, first: reply.firstSequence, counters: counters, count: Int(reply.count))
            case .subscribe(let name):
                let reply = try SubscribeReply(from: &body)
                peer.readings[reply.subscription] = Reading(name: name, expected: reply.waiting ? nil : reply.nextSequence)
            case .unsubscribe(let sub):
                peer.readings[sub] = nil
            case .close(let channel):
                peer.produced[channel]?.closed = true
            case .list, .listFrom:
                let reply = try ListReply(from: &body)
                if reply.more, let last = reply.channels.last, peer.outstanding.count < 16, !peer.doneSending {
                    peer.send(.listFrom(name: last.name, scope: last.scope), .listFrom, now: now)
                }
            case .sessions, .stats, .ping, .garbage:
                break
            }
        } catch {
            throw fail("peer \(peer.id) could not read the answer to \(kind): \(error)")
        }
    }

    /// A producer learnt the numbers of its push: they follow the channel's last, one each.
    private func record(instance: UInt64, first: UInt64, counters: [UInt64], count: Int) throws(SimulationFailure) {
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

    private func verify(instance: UInt64, sequence: UInt64, counter: UInt64) throws(SimulationFailure) {
        if let numbers = ledger[instance], sequence <= UInt64(numbers.count) {
            guard numbers[Int(sequence - 1)] == counter else {
                throw fail("channel incarnation \(instance): message \(sequence) read as push \(counter), pushed as \(numbers[Int(sequence - 1)])")
            }
        } else if (unverified[instance]?.count ?? 0) < 100_000 {
            unverified[instance, default: [:]][sequence] = counter
        }
    }
}

/// An invariant the simulation found broken: which, at which step of which seed, and how to run
/// it again.
public struct SimulationFailure: Error, CustomStringConvertible {
    public var seed: UInt64
    public var step: Int
    public var steps: Int
    public var message: String

    public var replay: String { "make simulate SEED=\(seed) STEPS=\(steps)" }

    public var description: String { "seed \(seed), step \(step): \(message)\n  replay: \(replay)" }
}
