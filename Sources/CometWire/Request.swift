import NIOCore

/// Where a subscription starts reading (docs/SEMANTICS.md, "Positions").
public enum SubscribePosition: Hashable, Sendable {
    /// Only messages pushed after the subscription (the default).
    case next
    /// The oldest message the channel still buffers.
    case oldest
    /// Sequence number `n` (resume); it must still be buffered.
    case from(UInt64)
    /// Exactly the `k` most recent messages (fewer if fewer exist).
    case last(UInt64)

    var wireKind: UInt8 {
        switch self {
        case .next: return 0
        case .oldest: return 1
        case .from: return 2
        case .last: return 3
        }
    }

    var wireArgument: UInt64 {
        switch self {
        case .next, .oldest: return 0
        case .from(let n), .last(let n): return n
        }
    }

    init(kind: UInt8, argument: UInt64) throws(WireError) {
        switch kind {
        case 0: self = .next
        case 1: self = .oldest
        case 2: self = .from(argument)
        case 3: self = .last(argument)
        default: throw WireError(.invalidArgument, "unknown position kind \(kind)")
        }
    }
}

/// Channel kinds of the CREATE request.
public struct ChannelKind: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// A site-scope channel with a ring of `size` messages shared by all readers.
    public static let buffered = ChannelKind(rawValue: 0)
    /// Site scope, latest value only (Eliom's `create_newest`).
    public static let newest = ChannelKind(rawValue: 1)
    /// Client-process scope (Eliom's default), made with CREATE_PRIVATE.
    public static let `private` = ChannelKind(rawValue: 2)
    /// Client-process scope, pulled from the producer (Eliom's `create_unlimited`).
    public static let unlimited = ChannelKind(rawValue: 3)

    /// Lower-case name for people: `buffered`, `newest`, `private`, `unlimited`, or the number.
    public var name: String {
        switch self {
        case .buffered: return "buffered"
        case .newest: return "newest"
        case .private: return "private"
        case .unlimited: return "unlimited"
        default: return "kind\(rawValue)"
        }
    }
}

/// A client-to-server frame: an operation and the request id its answer will carry.
public struct Request: Sendable {
    public enum Operation: Sendable {
        case hello(versions: [UInt16])
        case create(name: String, kind: ChannelKind, size: UInt32)
        case push(channel: UInt64, payload: ByteBuffer)
        case pushBatch(channel: UInt64, payloads: MessageBatch)
        /// PUSH_NUMBERED: `payloads` carry the producer's numbers `number`, `number + 1`, …; the
        /// daemon skips those it applied already (an idempotent resend).
        case pushNumbered(channel: UInt64, number: UInt64, payloads: MessageBatch)
        case close(channel: UInt64)
        /// `owner`: refuse (OWNER_MISMATCH) a channel created by any other uid. `mapped`: ask to
        /// read the channel's ring from shared memory (RING_ADVANCED events instead of MESSAGE);
        /// `returning` (with `mapped`): take the ring back after a detach (RETURN).
        case subscribe(
            name: String, position: SubscribePosition, epoch: UInt64, wait: Bool, scope: Scope = .site, owner: UInt32? = nil,
            mapped: Bool = false, returning: Bool = false)
        case resume(session: UInt64, tokenHigh: UInt64, tokenLow: UInt64)
        case createPrivate(name: String, kind: ChannelKind, size: UInt32, session: UInt64)
        case ack(subscription: UInt32, sequence: UInt64)
        case sessions
        case answer(channel: UInt64, pull: UInt64, payload: ByteBuffer)
        case waitTimeout(session: UInt64, milliseconds: UInt64)
        case subscribeExternal(address: String, name: String, history: UInt32, newest: Bool)
        case unsubscribe(subscription: UInt32)
        case list
        /// LIST from the entry after (`name`, `scope`) on: the next page.
        case listFrom(name: String, scope: UInt8)
        /// SESSIONS from the session after `session` on: the next page.
        case sessionsFrom(session: UInt64)
        case ping
        /// STATS: daemon totals, per-channel counters, per-user usage.
        case stats
        /// ADOPT: a producer takes back a channel it created, after the daemon restarted without
        /// its connection, proving it with the producer token CREATE gave.
        case adopt(channel: UInt64, tokenHigh: UInt64, tokenLow: UInt64)
        /// MIRROR: feed the import `name` with another daemon's channel (a bridge): its epoch
        /// `epoch` (0: not known yet, the import is only declared), first message `next`.
        case mirror(name: String, epoch: UInt64, next: UInt64, size: UInt32, newest: Bool)
        /// MIRROR_PUSH: messages of a mirror numbered `first`, `first + 1`, … by their origin.
        case mirrorPush(mirror: UInt64, first: UInt64, payloads: MessageBatch)
        /// MIRROR_STATE: what the mirror's origin is doing (live, stalled, closed after `last`).
        case mirrorState(mirror: UInt64, state: MirrorState, last: UInt64, reason: String)
        /// BRIDGE_REPORT: a bridge's counters, shown by STATS.
        case bridgeReport(BridgeReport)
        /// RING: the first and only request of a connection: the ring descriptor a RING_ADVANCED
        /// event's `ticket` stands for, sent with the answer (SCM_RIGHTS).
        case ring(ticket: UInt64)
    }

    public var id: UInt32
    public var operation: Operation

    public init(id: UInt32, _ operation: Operation) {
        self.id = id
        self.operation = operation
    }

    public var opcode: Opcode {
        switch operation {
        case .hello: return .hello
        case .create: return .create
        case .push: return .push
        case .pushBatch: return .pushBatch
        case .pushNumbered: return .pushNumbered
        case .close: return .close
        case .subscribe: return .subscribe
        case .unsubscribe: return .unsubscribe
        case .list: return .list
        case .ping: return .ping
        case .resume: return .resume
        case .createPrivate: return .createPrivate
        case .ack: return .ack
        case .sessions: return .sessions
        case .answer: return .answer
        case .waitTimeout: return .waitTimeout
        case .subscribeExternal: return .subscribeExternal
        case .listFrom: return .listFrom
        case .sessionsFrom: return .sessionsFrom
        case .stats: return .stats
        case .adopt: return .adopt
        case .mirror: return .mirror
        case .mirrorPush: return .mirrorPush
        case .mirrorState: return .mirrorState
        case .bridgeReport: return .bridgeReport
        case .ring: return .ring
        }
    }
}

/// What a mirror's origin is doing, as its feeder (a bridge) tells the daemon (MIRROR_STATE).
public enum MirrorState: UInt8, Sendable {
    /// Everything the origin held when the feeder (re)started reading is here: readers that
    /// waited for the import start now.
    case live = 1
    /// The origin cannot be reached: readers that have every message the mirror holds get
    /// FAILED `UPSTREAM_UNREACHABLE` with the reason, instead of waiting silently.
    case stalled = 2
    /// The origin's channel epoch ended after message `last`: readers drain, then CLOSED.
    case closed = 3
}

/// Whose channel a SUBSCRIBE names.
public enum Scope: UInt8, Hashable, Sendable {
    /// A site channel: anyone who knows the name.
    case site = 0
    /// A private channel addressed to this connection's session.
    case clientProcess = 1
}

extension Request {
    /// Appends a PUSH_BATCH frame whose `count` messages are already laid out in `messages` as
    /// the protocol has them (`u32 length`, bytes, each): a client that collects pushes as they
    /// come frames them without a copy per message. With a producer `number`, a PUSH_NUMBERED
    /// whose messages are numbered from it.
    public static func encodePushBatch(
        id: UInt32, channel: UInt64, number: UInt64? = nil, count: UInt32, messages: ByteBuffer, into buffer: inout ByteBuffer
    ) {
        buffer.writeInteger(UInt32(1 + 4 + 8 + (number == nil ? 0 : 8) + 4 + messages.readableBytes))
        buffer.writeInteger((number == nil ? Opcode.pushBatch : Opcode.pushNumbered).rawValue)
        buffer.writeInteger(id)
        buffer.writeInteger(channel)
        if let number { buffer.writeInteger(number) }
        buffer.writeInteger(count)
        buffer.writeImmutableBuffer(messages)
    }

    static let subscribeWaitFlag: UInt8 = 0x01
    static let subscribePrivateFlag: UInt8 = 0x02
    static let subscribeOwnerFlag: UInt8 = 0x04
    static let subscribeMappedFlag: UInt8 = 0x08
    static let subscribeReturnFlag: UInt8 = 0x10

    /// Appends this request as one frame.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeFrame { out in
            out.writeInteger(opcode.rawValue)
            out.writeInteger(id)
            switch operation {
            case .hello(let versions):
                out.writeInteger(UInt8(truncatingIfNeeded: versions.count))
                for v in versions.prefix(255) { out.writeInteger(v) }
            case .create(let name, let kind, let size):
                out.writeInteger(kind.rawValue)
                out.writeInteger(size)
                out.writeWireString(name)
            case .push(let channel, let payload):
                out.writeInteger(channel)
                out.writeImmutableBuffer(payload)
            case .pushBatch(let channel, let payloads):
                out.writeInteger(channel)
                payloads.write(to: &out)
            case .pushNumbered(let channel, let number, let payloads):
                out.writeMultipleIntegers(channel, number)
                payloads.write(to: &out)
            case .close(let channel):
                out.writeInteger(channel)
            case .subscribe(let name, let position, let epoch, let wait, let scope, let owner, let mapped, let returning):
                out.writeInteger(
                    (wait ? Request.subscribeWaitFlag : 0) | (scope == .clientProcess ? Request.subscribePrivateFlag : 0)
                        | (owner != nil ? Request.subscribeOwnerFlag : 0) | (mapped ? Request.subscribeMappedFlag : 0)
                        | (returning ? Request.subscribeReturnFlag : 0))
                out.writeInteger(position.wireKind)
                out.writeInteger(position.wireArgument)
                out.writeInteger(epoch)
                out.writeWireString(name)
                if let owner { out.writeInteger(owner) }
            case .listFrom(let name, let scope):
                out.writeInteger(scope)
                out.writeWireString(name)
            case .sessionsFrom(let session):
                out.writeInteger(session)
            case .unsubscribe(let subscription):
                out.writeInteger(subscription)
            case .resume(let session, let high, let low):
                out.writeMultipleIntegers(session, high, low)
            case .createPrivate(let name, let kind, let size, let session):
                out.writeMultipleIntegers(kind.rawValue, size, session)
                out.writeWireString(name)
            case .ack(let subscription, let sequence):
                out.writeMultipleIntegers(subscription, sequence)
            case .answer(let channel, let pull, let payload):
                out.writeMultipleIntegers(channel, pull)
                out.writeImmutableBuffer(payload)
            case .waitTimeout(let session, let milliseconds):
                out.writeMultipleIntegers(session, milliseconds)
            case .subscribeExternal(let address, let name, let history, let newest):
                out.writeMultipleIntegers(UInt8(newest ? 1 : 0), history)
                out.writeWireString(address)
                out.writeWireString(name)
            case .adopt(let channel, let high, let low):
                out.writeMultipleIntegers(channel, high, low)
            case .mirror(let name, let epoch, let next, let size, let newest):
                out.writeMultipleIntegers(UInt8(newest ? 1 : 0), size, epoch, next)
                out.writeWireString(name)
            case .mirrorPush(let mirror, let first, let payloads):
                out.writeMultipleIntegers(mirror, first)
                payloads.write(to: &out)
            case .mirrorState(let mirror, let state, let last, let reason):
                out.writeMultipleIntegers(mirror, state.rawValue, last)
                out.writeWireString(reason)
            case .bridgeReport(let report):
                report.write(to: &out)
            case .ring(let ticket):
                out.writeInteger(ticket)
            case .list, .ping, .sessions, .stats:
                break
            }
        }
    }

    /// Decodes a frame body (without its length prefix).
    /// - Throws: `WireError` with `.unknownOperation`, `.malformedFrame` or `.invalidArgument`.
    public static func decode(body: ByteBuffer) throws(WireError) -> Request {
        var body = body
        let rawOp = try body.readWire(UInt8.self, "opcode")
        guard let op = Opcode(rawValue: rawOp), rawOp < Opcode.ok.rawValue else {
            throw WireError(.unknownOperation, "unknown request opcode 0x\(String(rawOp, radix: 16))")
        }
        let id = try body.readWire(UInt32.self, "request id")
        let operation: Operation
        switch op {
        case .hello:
            let count = try body.readWire(UInt8.self, "version count")
            var versions: [UInt16] = []
            for _ in 0..<count { versions.append(try body.readWire(UInt16.self, "version")) }
            operation = .hello(versions: versions)
        case .create:
            let kind = try body.readWire(UInt8.self, "kind")
            let size = try body.readWire(UInt32.self, "size")
            let name = try body.readWireString()
            operation = .create(name: name, kind: ChannelKind(rawValue: kind), size: size)
        case .push:
            let channel = try body.readWire(UInt64.self, "channel")
            operation = .push(channel: channel, payload: body.readSlice(length: body.readableBytes)!)
        case .pushBatch:
            let channel = try body.readWire(UInt64.self, "channel")
            operation = .pushBatch(channel: channel, payloads: try MessageBatch(decoding: &body))
        case .pushNumbered:
            let channel = try body.readWire(UInt64.self, "channel")
            let number = try body.readWire(UInt64.self, "number")
            let payloads = try MessageBatch(decoding: &body)
            guard number > 0, !payloads.isEmpty, number <= UInt64.max - UInt64(payloads.count) else {
                throw WireError(.invalidArgument, "numbered pushes are numbered from 1 and hold at least one message")
            }
            operation = .pushNumbered(channel: channel, number: number, payloads: payloads)
        case .close:
            operation = .close(channel: try body.readWire(UInt64.self, "channel"))
        case .subscribe:
            let flags = try body.readWire(UInt8.self, "flags")
            let kind = try body.readWire(UInt8.self, "position")
            let argument = try body.readWire(UInt64.self, "position argument")
            let epoch = try body.readWire(UInt64.self, "epoch")
            let name = try body.readWireString()
            let owner = flags & Request.subscribeOwnerFlag != 0 ? try body.readWire(UInt32.self, "owner uid") : nil
            let known =
                Request.subscribeWaitFlag | Request.subscribePrivateFlag | Request.subscribeOwnerFlag | Request.subscribeMappedFlag
                | Request.subscribeReturnFlag
            guard flags & ~known == 0 else {
                throw WireError(.invalidArgument, "unknown subscribe flags 0x\(String(flags, radix: 16))")
            }
            guard flags & Request.subscribeReturnFlag == 0 || flags & Request.subscribeMappedFlag != 0 else {
                throw WireError(.invalidArgument, "RETURN is for mapped readers: RETURN without MAPPED")
            }
            guard flags & (Request.subscribeMappedFlag | Request.subscribePrivateFlag) != Request.subscribeMappedFlag | Request.subscribePrivateFlag else {
                throw WireError(.invalidArgument, "private channels are never mapped: MAPPED with PRIVATE")
            }
            operation = .subscribe(
                name: name, position: try SubscribePosition(kind: kind, argument: argument), epoch: epoch,
                wait: flags & Request.subscribeWaitFlag != 0,
                scope: flags & Request.subscribePrivateFlag != 0 ? .clientProcess : .site, owner: owner,
                mapped: flags & Request.subscribeMappedFlag != 0, returning: flags & Request.subscribeReturnFlag != 0)
        case .resume:
            operation = .resume(
                session: try body.readWire(UInt64.self, "session"), tokenHigh: try body.readWire(UInt64.self, "token"),
                tokenLow: try body.readWire(UInt64.self, "token"))
        case .createPrivate:
            let kind = try body.readWire(UInt8.self, "kind")
            let size = try body.readWire(UInt32.self, "size")
            let session = try body.readWire(UInt64.self, "session")
            let name = try body.readWireString()
            operation = .createPrivate(name: name, kind: ChannelKind(rawValue: kind), size: size, session: session)
        case .ack:
            operation = .ack(
                subscription: try body.readWire(UInt32.self, "subscription"), sequence: try body.readWire(UInt64.self, "sequence"))
        case .sessions:
            operation = .sessions
        case .answer:
            let channel = try body.readWire(UInt64.self, "channel")
            let pull = try body.readWire(UInt64.self, "pull")
            operation = .answer(channel: channel, pull: pull, payload: body.readSlice(length: body.readableBytes)!)
        case .subscribeExternal:
            let flags = try body.readWire(UInt8.self, "flags")
            let history = try body.readWire(UInt32.self, "history")
            let address = try body.readWireString()
            let name = try body.readWireString()
            guard flags & ~1 == 0 else { throw WireError(.invalidArgument, "unknown external subscribe flags 0x\(String(flags, radix: 16))") }
            operation = .subscribeExternal(address: address, name: name, history: history, newest: flags & 1 != 0)
        case .waitTimeout:
            operation = .waitTimeout(
                session: try body.readWire(UInt64.self, "session"), milliseconds: try body.readWire(UInt64.self, "timeout"))
        case .unsubscribe:
            operation = .unsubscribe(subscription: try body.readWire(UInt32.self, "subscription"))
        case .list:
            operation = .list
        case .ping:
            operation = .ping
        case .stats:
            operation = .stats
        case .adopt:
            operation = .adopt(
                channel: try body.readWire(UInt64.self, "channel"), tokenHigh: try body.readWire(UInt64.self, "token"),
                tokenLow: try body.readWire(UInt64.self, "token"))
        case .mirror:
            let flags = try body.readWire(UInt8.self, "flags")
            let size = try body.readWire(UInt32.self, "size")
            let epoch = try body.readWire(UInt64.self, "epoch")
            let next = try body.readWire(UInt64.self, "next")
            let name = try body.readWireString()
            guard flags & ~1 == 0 else { throw WireError(.invalidArgument, "unknown mirror flags 0x\(String(flags, radix: 16))") }
            guard next > 0 else { throw WireError(.invalidArgument, "a mirror's first sequence number is at least 1") }
            operation = .mirror(name: name, epoch: epoch, next: next, size: size, newest: flags & 1 != 0)
        case .mirrorPush:
            let mirror = try body.readWire(UInt64.self, "mirror")
            let first = try body.readWire(UInt64.self, "first sequence")
            let payloads = try MessageBatch(decoding: &body)
            guard first > 0, !payloads.isEmpty, first <= UInt64.max - UInt64(payloads.count) else {
                throw WireError(.invalidArgument, "mirrored messages are numbered from 1 and a push holds at least one")
            }
            operation = .mirrorPush(mirror: mirror, first: first, payloads: payloads)
        case .mirrorState:
            let mirror = try body.readWire(UInt64.self, "mirror")
            let raw = try body.readWire(UInt8.self, "state")
            let last = try body.readWire(UInt64.self, "last sequence")
            let reason = try body.readWireString()
            guard let state = MirrorState(rawValue: raw) else {
                throw WireError(.invalidArgument, "unknown mirror state \(raw)")
            }
            operation = .mirrorState(mirror: mirror, state: state, last: last, reason: reason)
        case .bridgeReport:
            operation = .bridgeReport(try BridgeReport(from: &body))
        case .ring:
            operation = .ring(ticket: try body.readWire(UInt64.self, "ticket"))
        case .listFrom:
            let scope = try body.readWire(UInt8.self, "scope")
            operation = .listFrom(name: try body.readWireString(), scope: scope)
        case .sessionsFrom:
            operation = .sessionsFrom(session: try body.readWire(UInt64.self, "session"))
        case .ok, .error, .message, .full, .closed, .started, .offer, .ended, .pull, .reset, .failed, .ringAdvanced, .ringDetached:
            throw WireError(.unknownOperation, "opcode 0x\(String(rawOp, radix: 16)) is not a request")
        }
        try body.expectEnd("request")
        return Request(id: id, operation)
    }
}
