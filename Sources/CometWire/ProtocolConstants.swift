/// Constants of wire protocol v1 (docs/PROTOCOL.md, "Conventions" and "Framing").
public enum CometProtocol {
    /// The protocol version this codec speaks.
    public static let version: UInt16 = 1
    /// Size of the length prefix that starts every frame.
    public static let lengthPrefixSize = 4
    /// The largest frame body any peer may send before the handshake advertises otherwise.
    public static let defaultMaxFrameSize: UInt32 = 1 << 20
    /// The smallest maximum frame size a server may advertise.
    public static let minimumMaxFrameSize: UInt32 = 4096
    /// Longest channel name, in bytes.
    public static let maxNameLength = 255
    /// Request id reserved for errors that concern the whole connection.
    public static let connectionRequestID: UInt32 = 0
}
