/// One message read from a channel.
public struct CometMessage: Sendable, Hashable {
    /// The channel's sequence number for this message (from 1, consecutive).
    public var sequence: UInt64
    public var payload: [UInt8]

    public init(sequence: UInt64, payload: [UInt8]) {
        self.sequence = sequence
        self.payload = payload
    }

    /// The payload as UTF-8 text (invalid bytes are replaced).
    public var string: String { String(decoding: payload, as: UTF8.self) }
}
