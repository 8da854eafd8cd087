import NIOCore

/// The messages of one PUSH, PUSH_BATCH, PUSH_NUMBERED or MIRROR_PUSH as they came on the wire:
/// one buffer holding `u32 length`, bytes, for each message (checked whole when decoded), read in
/// place. A daemon copies each message once, from here into its channel's ring, without making a
/// buffer (and a reference to count) per message.
public struct MessageBatch: Sendable, ExpressibleByArrayLiteral {
    private enum Layout: Sendable {
        /// `count` entries: `u32 length`, then the bytes.
        case entries(ByteBuffer)
        /// One message, unframed (a PUSH).
        case one(ByteBuffer)
    }

    private let layout: Layout
    /// How many messages.
    public let count: Int
    /// Their bytes, without the length fields.
    public let payloadBytes: Int

    public var isEmpty: Bool { count == 0 }

    private init(layout: Layout, count: Int, payloadBytes: Int) {
        self.layout = layout
        self.count = count
        self.payloadBytes = payloadBytes
    }

    /// One message (PUSH): no copy.
    public init(one payload: ByteBuffer) {
        self.init(layout: .one(payload), count: 1, payloadBytes: payload.readableBytes)
    }

    /// `payloads`, laid out as the wire has them (a copy).
    public init(_ payloads: some Sequence<ByteBuffer>) {
        var entries = ByteBuffer()
        var count = 0
        var bytes = 0
        for payload in payloads {
            entries.writeInteger(UInt32(payload.readableBytes))
            entries.writeImmutableBuffer(payload)
            count += 1
            bytes += payload.readableBytes
        }
        self.init(layout: .entries(entries), count: count, payloadBytes: bytes)
    }

    public init(arrayLiteral payloads: ByteBuffer...) {
        self.init(payloads)
    }

    /// Reads `u32 count`, then `count` × (`u32 length`, bytes), from `body`: every length is
    /// checked against what the frame holds before the batch is made.
    init(decoding body: inout ByteBuffer) throws(WireError) {
        let count = try body.readWire(UInt32.self, "count")
        // Each entry takes at least 4 bytes: a count above that is a lie, not an allocation.
        guard Int(count) <= body.readableBytes / 4 else { throw WireError.malformed("batch count \(count) exceeds frame") }
        var offset = body.readerIndex
        let end = body.writerIndex
        for _ in 0..<count {
            guard end - offset >= 4, let length = body.getInteger(at: offset, as: UInt32.self) else {
                throw WireError.malformed("truncated field message length")
            }
            guard Int(length) <= end - offset - 4 else { throw WireError.malformed("truncated batch message") }
            offset += 4 + Int(length)
        }
        let size = offset - body.readerIndex
        let entries = body.readSlice(length: size)!
        self.init(layout: .entries(entries), count: Int(count), payloadBytes: size - 4 * Int(count))
    }

    /// Appends `u32 count` and the entries (PUSH_BATCH, PUSH_NUMBERED and MIRROR_PUSH bodies).
    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(count))
        switch layout {
        case .entries(let entries):
            buffer.writeImmutableBuffer(entries)
        case .one(let payload):
            buffer.writeInteger(UInt32(payload.readableBytes))
            buffer.writeImmutableBuffer(payload)
        }
    }

    /// Reads the messages one after the other: each is valid only inside `body`.
    public struct Payloads {
        private let raw: UnsafeRawBufferPointer
        private let framed: Bool
        private var offset = 0
        private var left: Int

        fileprivate init(_ raw: UnsafeRawBufferPointer, framed: Bool, count: Int) {
            self.raw = raw
            self.framed = framed
            self.left = count
        }

        /// The next message, nil after the last.
        public mutating func next() -> UnsafeRawBufferPointer? {
            guard left > 0 else { return nil }
            left -= 1
            guard framed else {
                offset = raw.count
                return raw
            }
            let length = Int(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            let start = offset + 4
            offset = start + length
            return UnsafeRawBufferPointer(rebasing: raw[start..<offset])
        }
    }

    /// Calls `body` with the messages in order, in place (pointers valid only inside `body`).
    public func withPayloads<R, E: Error>(_ body: (inout Payloads) throws(E) -> R) throws(E) -> R {
        let (buffer, framed) = switch layout {
        case .entries(let entries): (entries, true)
        case .one(let payload): (payload, false)
        }
        let outcome: Result<R, E> = buffer.withUnsafeReadableBytes { raw in
            var payloads = Payloads(raw, framed: framed, count: count)
            do throws(E) { return .success(try body(&payloads)) } catch { return .failure(error) }
        }
        return try outcome.get()
    }

    /// Each message as a buffer of its own (a slice: no copy), for paths that keep them.
    public var buffers: [ByteBuffer] {
        switch layout {
        case .one(let payload):
            return [payload]
        case .entries(var entries):
            var buffers: [ByteBuffer] = []
            buffers.reserveCapacity(count)
            for _ in 0..<count {
                let length = entries.readInteger(as: UInt32.self)!
                buffers.append(entries.readSlice(length: Int(length))!)
            }
            return buffers
        }
    }

    /// All but the first `n` messages.
    public func dropFirst(_ n: Int) -> MessageBatch {
        let n = min(max(0, n), count)
        guard n > 0 else { return self }
        let (skipped, bytes) = span(n)
        switch layout {
        case .one: return []
        case .entries(let entries):
            return MessageBatch(
                layout: .entries(entries.getSlice(at: entries.readerIndex + skipped, length: entries.readableBytes - skipped)!),
                count: count - n, payloadBytes: payloadBytes - bytes)
        }
    }

    /// The first `n` messages.
    public func prefix(_ n: Int) -> MessageBatch {
        let n = min(max(0, n), count)
        guard n < count else { return self }
        let (size, bytes) = span(n)
        switch layout {
        case .one: return []
        case .entries(let entries):
            return MessageBatch(layout: .entries(entries.getSlice(at: entries.readerIndex, length: size)!), count: n, payloadBytes: bytes)
        }
    }

    /// The wire size of the first `n` entries, and their payload bytes.
    private func span(_ n: Int) -> (size: Int, payloadBytes: Int) {
        withPayloads { payloads in
            var bytes = 0
            for _ in 0..<n { bytes += payloads.next()!.count }
            return (bytes + 4 * n, bytes)
        }
    }
}
