/// Why bytes could not be decoded into a frame. Each maps to the wire error the
/// server answers with before it closes the connection.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    static func malformed(_ what: String) -> WireError { WireError(.malformedFrame, what) }

    public var description: String { "\(code.name): \(message)" }
}
