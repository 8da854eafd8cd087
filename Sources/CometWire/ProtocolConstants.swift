/// Constants of wire protocol v1 (docs/PROTOCOL.md, "Conventions" and "Framing").
public enum CometProtocol {
    /// The version of comet (daemon, tools, libraries) this build is; the VERSION file's.
    public static let softwareVersion = "0.9.2"
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

extension CometProtocol {
    /// Where clients and a standalone daemon find the socket when none is named:
    /// `$COMET_SOCKET`, else `/run/comet/comet.sock` for root, else `$XDG_RUNTIME_DIR/comet/comet.sock`.
    /// `nil` when none applies (not root and no `XDG_RUNTIME_DIR`).
    public static func defaultSocketPath(environment: [String: String], isRoot: Bool) -> String? {
        if let path = environment["COMET_SOCKET"], !path.isEmpty { return path }
        if isRoot { return "/run/comet/comet.sock" }
        guard let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty else { return nil }
        return runtime + "/comet/comet.sock"
    }
}
