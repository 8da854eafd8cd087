import Comet
import CometChannels
import CometWire
import NIOCore
import NIOEmbedded

/// How a simulated peer reads what the daemon sends.
enum ReadMode: Equatable, CustomStringConvertible {
    /// Reads everything at every step.
    case fast
    /// Reads up to this many bytes at its own steps.
    case slow(Int)
    /// Reads nothing until the step given, then reads fast.
    case stalled(until: Int)
    /// Never reads.
    case never

    var description: String {
        switch self {
        case .fast: return "fast"
        case .slow(let n): return "slow(\(n))"
        case .stalled(let until): return "stalled(until: \(until))"
        case .never: return "never"
        }
    }
}

/// A request a peer sent and waits to be answered.
struct Outstanding {
    enum Kind {
        case hello, ping, list, listFrom, sessions, stats, close(UInt64), unsubscribe(UInt32), garbage
        case create(name: String, newest: Bool)
        /// `number`: the producer number of a numbered push (PUSH_NUMBERED).
        case push(channel: UInt64, counters: [UInt64], number: UInt64?)
        /// Numbers the channel has already (answered before), sent again: skipped, answered
        /// with the sequence numbers they got, `expected` the first.
        case resend(channel: UInt64, count: Int, expected: UInt64)
        /// `mapped`: SUBSCRIBE asked to read the ring from shared memory; `returning`: to be given
        /// it back after a detach (RETURN).
        case subscribe(name: String, mapped: Bool, returning: Bool = false)
        case ack
    }

    var kind: Kind
    /// Virtual time it was sent, in nanoseconds.
    var sentAt: UInt64
}

/// A channel a peer produces.
struct Produced {
    var name: String
    /// The simulator's id of this incarnation of the channel (in every payload).
    var instance: UInt64
    var nextCounter: UInt64 = 1
    var closed = false
    /// Whether its pushes carry producer numbers (half the channels), the next number, and the
    /// sequence numbers recent numbers got (for resends).
    var numbered = false
    var nextNumber: UInt64 = 1
    var sequences: [UInt64: UInt64] = [:]
}

/// A subscription a peer reads.
struct Reading {
    var name: String
    /// The next sequence number expected (nil while it waits for its channel).
    var expected: UInt64?
    /// The channel incarnation its messages come from, once one was seen.
    var instance: UInt64?
    var lastCounter: UInt64 = 0
    /// It asked to read the ring mapped (the daemon may still serve it over the socket).
    var askedMapped = false
    /// It asked to be given its ring back after a detach (SUBSCRIBE RETURN).
    var askedReturn = false
    /// While it reads a mapped ring: the ring and what RING_ADVANCED said, as the Swift client keeps them.
    var ring: MappedReading?
    /// Since when (virtual nanoseconds) it finds itself overtaken in its ring, not yet detached.
    var overtakenSince: UInt64?
    /// It read from a ring before RING_DETACHED: MESSAGE frames below `expected` were read there.
    var wasMapped = false
    /// Its connection closed before it could map its ring: how it ends is not checked.
    var cutOff = false
}

extension Reading {
    /// How it read its ring, for failure reports.
    var mappedState: String {
        guard askedMapped else { return "" }
        guard let ring else { return " (asked mapped; \(wasMapped ? "detached" : "never mapped"))" }
        return " (mapped: file \(ring.ring == nil ? "none" : "mapped"), announced \(ring.announced), held \(ring.held), "
            + "acknowledged \(ring.acknowledged), overtaken since \(overtakenSince.map(String.init) ?? "-"))"
    }
}

/// One simulated client: its socket, what it asked and what it reads.
final class SimPeer {
    let id: Int
    let uid: UInt32
    let readMode: ReadMode
    let channel: EmbeddedChannel
    let socket: SimulatedSocket
    /// Bytes the peer read and has not decoded yet.
    var received = ByteBufferAllocator().buffer(capacity: 0)
    var nextRequestID: UInt32 = 1
    var outstanding: [UInt32: Outstanding] = [:]
    var handshaken = false
    /// The daemon ended the connection (ERROR with request id 0, or closed it).
    var ended = false
    /// The peer stopped sending (half-close, disconnect, or garbage).
    var doneSending = false
    var produced: [UInt64: Produced] = [:]
    var readings: [UInt32: Reading] = [:]
    var lastListName: String?
    var maxFrameSize = Int(CometProtocol.defaultMaxFrameSize)
    /// It sent random bytes: these may hold requests it does not know of.
    var sentGarbage = false
    /// The step at which the peer disconnects, if it is still there.
    var leavesAt = Int.max

    init(id: Int, uid: UInt32, readMode: ReadMode, channel: EmbeddedChannel, socket: SimulatedSocket) {
        self.id = id
        self.uid = uid
        self.readMode = readMode
        self.channel = channel
        self.socket = socket
    }

    /// Whether the peer reads at `step` at all.
    func reads(at step: Int) -> Bool {
        switch readMode {
        case .fast, .slow: return true
        case .stalled(let until): return step >= until
        case .never: return false
        }
    }

    /// Whether the answer-time invariant applies: it reads, and has always read.
    var alwaysReads: Bool {
        switch readMode {
        case .fast, .slow: return true
        case .stalled, .never: return false
        }
    }

    /// Sends `request` and remembers it.
    func send(_ operation: Request.Operation, _ kind: Outstanding.Kind, now: UInt64) {
        let id = nextRequestID
        nextRequestID &+= 1
        if nextRequestID == 0 { nextRequestID = 1 }
        var buffer = channel.allocator.buffer(capacity: 64)
        Request(id: id, operation).encode(into: &buffer)
        outstanding[id] = Outstanding(kind: kind, sentAt: now)
        socket.peerSends(buffer)
    }

    /// Sends bytes that are not a request the daemon will answer as one.
    func sendRaw(_ bytes: [UInt8]) {
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        socket.peerSends(buffer)
    }
}
