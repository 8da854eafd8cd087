import NIOCore

/// A server-to-client frame: a response to a request, or an event.
public enum ServerFrame: Sendable {
    /// Success. `body` holds the operation's reply fields; decode them with the reply type
    /// of the request that `requestID` names (`HelloReply`, `CreateReply`, ...).
    case ok(requestID: UInt32, body: ByteBuffer)
    /// Failure of request `requestID`, or of the whole connection when it is 0.
    case error(requestID: UInt32, code: ErrorCode, message: String)
    /// Message `sequence` of the channel that `subscription` reads.
    case message(subscription: UInt32, sequence: UInt64, payload: ByteBuffer)
    /// The subscription ended because it fell behind the ring; `firstAvailable` is still buffered.
    case full(subscription: UInt32, firstAvailable: UInt64)
    /// The subscription ended because the channel closed after message `lastSequence`.
    case closed(subscription: UInt32, lastSequence: UInt64)
    /// A waiting subscription started: its channel now exists.
    case started(subscription: UInt32, epoch: UInt64, nextSequence: UInt64, owner: Owner)
    /// A private channel was created for this connection's session (or is still there after RESUME).
    case offer(channel: UInt64, kind: ChannelKind, epoch: UInt64, name: String, owner: Owner)
    /// A channel this connection produces ended without its CLOSE (e.g. its session ended).
    case ended(channel: UInt64, code: ErrorCode, message: String)
    /// The reader of unlimited channel `channel` wants one more message: answer with ANSWER `pull`.
    case pull(channel: UInt64, pull: UInt64)
    /// The subscription ended because its channel was re-created with epoch `epoch` (sequence
    /// numbers restarted); subscribe again to read the new one.
    case reset(subscription: UInt32, epoch: UInt64)
    /// The subscription ended with an error (e.g. OWNER_MISMATCH when a waiting subscription's
    /// channel was created by another owner).
    case failed(subscription: UInt32, code: ErrorCode, message: String)
    /// A mapped subscription's channel holds messages up to `last`, to be read from the ring;
    /// `ticket` ≠ 0: fetch the ring's descriptor (RING) first — the first event, or the ring moved.
    /// `reportRead`: acknowledge (ACK) `last` once read. `held`: the reader is protected — it never
    /// concludes FULL from the ring: the server detaches it (RING_DETACHED) or says FULL.
    /// `newest`: a newest channel — overtaken, the reader skips to the oldest message kept.
    case ringAdvanced(
        subscription: UInt32, last: UInt64, ticket: UInt64, reportRead: Bool = false, held: Bool = false, newest: Bool = false)
    /// A mapped subscription is served over the socket from now on: MESSAGE frames from
    /// `nextSequence` (drop those already read from the ring).
    case ringDetached(subscription: UInt32, nextSequence: UInt64)
}

extension ServerFrame {
    /// Appends this frame.
    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .ok(let requestID, let body):
            buffer.writeFrame { out in
                out.writeInteger(Opcode.ok.rawValue)
                out.writeInteger(requestID)
                out.writeImmutableBuffer(body)
            }
        case .error(let requestID, let code, let message):
            ServerFrame.writeError(requestID: requestID, code: code, message: message, into: &buffer)
        case .message(let subscription, let sequence, let payload):
            ServerFrame.writeMessage(subscription: subscription, sequence: sequence, payload: payload, into: &buffer)
        case .full(let subscription, let firstAvailable):
            buffer.writeFrame { out in
                out.writeInteger(Opcode.full.rawValue)
                out.writeInteger(subscription)
                out.writeInteger(firstAvailable)
            }
        case .closed(let subscription, let lastSequence):
            buffer.writeFrame { out in
                out.writeInteger(Opcode.closed.rawValue)
                out.writeInteger(subscription)
                out.writeInteger(lastSequence)
            }
        case .started(let subscription, let epoch, let nextSequence, let owner):
            buffer.writeFrame { out in
                out.writeMultipleIntegers(Opcode.started.rawValue, subscription, epoch, nextSequence, owner.uid, owner.gid)
            }
        case .offer(let channel, let kind, let epoch, let name, let owner):
            buffer.writeFrame { out in
                out.writeMultipleIntegers(Opcode.offer.rawValue, channel, kind.rawValue, epoch)
                out.writeWireString(name)
                out.writeMultipleIntegers(owner.uid, owner.gid)
            }
        case .failed(let subscription, let code, let message):
            buffer.writeFrame { out in
                out.writeMultipleIntegers(Opcode.failed.rawValue, subscription, code.rawValue)
                out.writeWireString(String(message.utf8.prefix(1024))!)
            }
        case .ended(let channel, let code, let message):
            buffer.writeFrame { out in
                out.writeMultipleIntegers(Opcode.ended.rawValue, channel, code.rawValue)
                out.writeWireString(message)
            }
        case .pull(let channel, let pull):
            buffer.writeFrame { out in out.writeMultipleIntegers(Opcode.pull.rawValue, channel, pull) }
        case .reset(let subscription, let epoch):
            buffer.writeFrame { out in out.writeMultipleIntegers(Opcode.reset.rawValue, subscription, epoch) }
        case .ringAdvanced(let subscription, let last, let ticket, let reportRead, let held, let newest):
            buffer.writeFrame { out in
                out.writeMultipleIntegers(
                    Opcode.ringAdvanced.rawValue, subscription, last, ticket,
                    UInt8((reportRead ? 1 : 0) | (held ? 2 : 0) | (newest ? 4 : 0)))
            }
        case .ringDetached(let subscription, let next):
            buffer.writeFrame { out in out.writeMultipleIntegers(Opcode.ringDetached.rawValue, subscription, next) }
        }
    }

    /// Writes a MESSAGE frame without building a `ServerFrame` (the daemon's hot path).
    @inlinable
    public static func writeMessage(subscription: UInt32, sequence: UInt64, payload: ByteBuffer, into buffer: inout ByteBuffer) {
        payload.withUnsafeReadableBytes { writeMessage(subscription: subscription, sequence: sequence, bytes: $0, into: &buffer) }
    }

    /// Writes a MESSAGE frame whose payload is `bytes`.
    @inlinable
    public static func writeMessage(subscription: UInt32, sequence: UInt64, bytes: UnsafeRawBufferPointer, into buffer: inout ByteBuffer) {
        // The delivery hot path: one capacity check and plain stores per message.
        let size = bytes.count
        buffer.reserveCapacity(minimumWritableBytes: 17 + size)
        buffer.withUnsafeMutableWritableBytes { out in
            out.storeBytes(of: UInt32(13 + size).bigEndian, toByteOffset: 0, as: UInt32.self)
            out.storeBytes(of: Opcode.message.rawValue, toByteOffset: 4, as: UInt8.self)
            out.storeBytes(of: subscription.bigEndian, toByteOffset: 5, as: UInt32.self)
            out.storeBytes(of: sequence.bigEndian, toByteOffset: 9, as: UInt64.self)
            if size > 0 { UnsafeMutableRawBufferPointer(rebasing: out[17..<(17 + size)]).copyMemory(from: bytes) }
        }
        buffer.moveWriterIndex(forwardBy: 17 + size)
    }

    /// Writes an OK frame whose body `fields` writes.
    @inlinable
    public static func writeOK(requestID: UInt32, into buffer: inout ByteBuffer, _ fields: (inout ByteBuffer) -> Void = { _ in }) {
        buffer.writeFrame { out in
            out.writeInteger(Opcode.ok.rawValue)
            out.writeInteger(requestID)
            fields(&out)
        }
    }

    /// Writes an ERROR frame.
    public static func writeError(requestID: UInt32, code: ErrorCode, message: String, into buffer: inout ByteBuffer) {
        buffer.writeFrame { out in
            out.writeInteger(Opcode.error.rawValue)
            out.writeInteger(requestID)
            out.writeInteger(code.rawValue)
            out.writeWireString(String(message.utf8.prefix(1024))!)
        }
    }

    /// Decodes a frame body. Trailing bytes after the known fields of an event are ignored
    /// (a v1 server may append fields), except in MESSAGE where they are the payload.
    public static func decode(body: ByteBuffer) throws(WireError) -> ServerFrame {
        var body = body
        let rawOp = try body.readWire(UInt8.self, "opcode")
        guard let op = Opcode(rawValue: rawOp), rawOp >= Opcode.ok.rawValue else {
            throw WireError(.unknownOperation, "unknown server opcode 0x\(String(rawOp, radix: 16))")
        }
        switch op {
        case .ok:
            let id = try body.readWire(UInt32.self, "request id")
            return .ok(requestID: id, body: body)
        case .error:
            let id = try body.readWire(UInt32.self, "request id")
            let code = try body.readWire(UInt16.self, "code")
            let message = try body.readWireString()
            return .error(requestID: id, code: ErrorCode(rawValue: code), message: message)
        case .message:
            let sub = try body.readWire(UInt32.self, "subscription")
            let seq = try body.readWire(UInt64.self, "sequence")
            return .message(subscription: sub, sequence: seq, payload: body)
        case .full:
            return .full(
                subscription: try body.readWire(UInt32.self, "subscription"),
                firstAvailable: try body.readWire(UInt64.self, "first available"))
        case .closed:
            return .closed(
                subscription: try body.readWire(UInt32.self, "subscription"),
                lastSequence: try body.readWire(UInt64.self, "last sequence"))
        case .started:
            return .started(
                subscription: try body.readWire(UInt32.self, "subscription"),
                epoch: try body.readWire(UInt64.self, "epoch"),
                nextSequence: try body.readWire(UInt64.self, "next sequence"), owner: body.readOptionalOwner())
        case .offer:
            return .offer(
                channel: try body.readWire(UInt64.self, "channel"),
                kind: ChannelKind(rawValue: try body.readWire(UInt8.self, "kind")),
                epoch: try body.readWire(UInt64.self, "epoch"), name: try body.readWireString(), owner: body.readOptionalOwner())
        case .failed:
            return .failed(
                subscription: try body.readWire(UInt32.self, "subscription"),
                code: ErrorCode(rawValue: try body.readWire(UInt16.self, "code")), message: try body.readWireString())
        case .ended:
            return .ended(
                channel: try body.readWire(UInt64.self, "channel"),
                code: ErrorCode(rawValue: try body.readWire(UInt16.self, "code")), message: try body.readWireString())
        case .reset:
            return .reset(subscription: try body.readWire(UInt32.self, "subscription"), epoch: try body.readWire(UInt64.self, "epoch"))
        case .pull:
            return .pull(channel: try body.readWire(UInt64.self, "channel"), pull: try body.readWire(UInt64.self, "pull"))
        case .ringAdvanced:
            let subscription = try body.readWire(UInt32.self, "subscription")
            let last = try body.readWire(UInt64.self, "last")
            let ticket = try body.readWire(UInt64.self, "ticket")
            let flags = body.readInteger(as: UInt8.self) ?? 0
            return .ringAdvanced(
                subscription: subscription, last: last, ticket: ticket, reportRead: flags & 1 != 0, held: flags & 2 != 0,
                newest: flags & 4 != 0)
        case .ringDetached:
            return .ringDetached(
                subscription: try body.readWire(UInt32.self, "subscription"), nextSequence: try body.readWire(UInt64.self, "next sequence"))
        default:
            throw WireError(.unknownOperation, "opcode 0x\(String(rawOp, radix: 16)) is not a server frame")
        }
    }
}
