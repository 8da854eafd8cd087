import Comet
import CometChannels
import CometServer
import CometWire
import Logging
import NIOCore
import NIOEmbedded

#if canImport(Glibc)
import Glibc
#endif

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
        /// Numbered pushes sent again and skipped by the daemon (answered with their first numbers).
        public var resendsSkipped = 0
        public var holds = 0
        /// Messages mapped readers read from their rings, rings they mapped, and detaches.
        public var ringMessages = 0
        public var ringsMapped = 0
        public var detaches = 0
        /// Detached readers given their ring back (RETURN).
        public var returns = 0
        public var invariantChecks = 0
        public var drainChecks = 0
        public var virtualSeconds = 0.0

        public var description: String {
            let simulated = Int(virtualSeconds)
            return "seed \(seed): \(steps) steps, \(peers) peers, \(requestsAnswered) answers, \(messagesRead) messages read, "
                + "\(fulls) FULL, \(resendsSkipped) resends skipped, \(holds) steps with a held producer, "
                + "\(ringsMapped) rings mapped, \(ringMessages) read from them, \(detaches) detached, \(returns) returned, \(invariantChecks) invariant checks, "
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
    /// RING's answer and descriptors (duplicates, the simulator's to close) as the daemon passed them.
    var passedRing: (ByteBuffer, [Int32])?
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
        broker.wakeForNextTurn = { [loop] in loop.execute($0) }
        // The simulated connections have no socket to pass descriptors on: RING's come here.
        broker.passDescriptors = { [unowned self] frame, descriptors in
            self.passedRing = (frame, descriptors.map { dup($0) })
            return true
        }
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

    func advance() throws(SimulationFailure) {
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
                // Now and then a burst: several requests before the daemon reads, so that a
                // read holds the end of one frame and the start of the next (pipelining).
                if rng.chance(0.05) {
                    for _ in 0..<(1 + rng.next() % 3) where !peer.ended && !peer.doneSending { act(peer) }
                }
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
    func pump() {
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

    func spawn() {
        let uid = Self.uids.randomElement(using: &rng)!
        let mode: ReadMode
        switch rng.next() % 20 {
        case 0..<10: mode = .fast
        case 10..<14: mode = .slow(256 << Int(rng.next() % 7))
        case 14..<17: mode = .stalled(until: step + 100 + Int(rng.next() % 5000))
        default: mode = .never
        }
        let kernelCapacity = [1024, 4096, 16384].randomElement(using: &rng)!
        let readSize = [512, 4096, 65536].randomElement(using: &rng)!
        let (channel, socket) = connect(uid: uid, pid: Int32(nextPeerID), kernelCapacity: kernelCapacity, readSize: readSize)
        let peer = SimPeer(id: nextPeerID, uid: uid, readMode: mode, channel: channel, socket: socket)
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
}

extension Simulation {
    /// A new connection to the daemon: an `EmbeddedChannel` whose first handler is a simulated
    /// socket, then the daemon's `ConnectionHandler` for a peer of `uid`.
    func connect(uid: UInt32, pid: Int32, kernelCapacity: Int, readSize: Int) -> (EmbeddedChannel, SimulatedSocket) {
        let socket = SimulatedSocket(
            kernelCapacity: kernelCapacity, highWatermark: configuration.outboundHighWatermark,
            lowWatermark: configuration.outboundLowWatermark, readSize: readSize)
        let handler = ConnectionHandler(
            broker: broker, identity: Identity(pid: pid, uid: uid, gid: uid), socketQueue: { [unowned socket] in socket.queued })
        let channel = EmbeddedChannel(handlers: [], loop: loop)
        try! channel.pipeline.syncOperations.addHandlers([socket, handler])
        channel.connect(to: try! SocketAddress(unixDomainSocketPath: "/sim/comet.sock"), promise: nil)
        channel.pipeline.read()
        return (channel, socket)
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
