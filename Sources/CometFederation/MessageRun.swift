import NIOCore

/// Several comet messages in one NATS message (`Comet-Event: run`, docs/FEDERATION.md "Runs"):
/// each a `u32` big-endian length then its bytes, filling the payload exactly.
public enum MessageRun {
    /// The most messages, and payload bytes, the exporter puts in one run.
    public static let maxMessages = 512
    public static let maxBytes = 64 * 1024

    /// The bytes of a run of `messages`.
    public static func encode(_ messages: [ByteBuffer]) -> ByteBuffer {
        var payload = ByteBuffer()
        payload.reserveCapacity(messages.reduce(0) { $0 + 4 + $1.readableBytes })
        for var message in messages {
            payload.writeInteger(UInt32(message.readableBytes))
            payload.writeBuffer(&message)
        }
        return payload
    }

    /// The `count` messages of a run; nil unless `bytes` is exactly that.
    public static func split(_ bytes: UnsafeRawBufferPointer, count: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> [ByteBuffer]? {
        guard count >= 1, count <= bytes.count / 4 else { return nil }  // each message takes 4 bytes at least
        var messages: [ByteBuffer] = []
        messages.reserveCapacity(count)
        var at = 0
        for _ in 0..<count {
            guard bytes.count - at >= 4 else { return nil }
            let length = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
            at += 4
            guard length <= bytes.count - at else { return nil }
            messages.append(allocator.buffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + length)])))
            at += length
        }
        return at == bytes.count ? messages : nil
    }
}
