/// Why an image cannot be read.
public struct ImageError: Error, Equatable, CustomStringConvertible {
    public enum Code: UInt8, Sendable {
        /// Not an image at all (wrong magic).
        case notAnImage = 1
        /// Written in a format version this binary does not read.
        case unsupportedFormat = 2
        /// Cut short, or its checksum does not match (a torn or damaged write).
        case damaged = 3
        /// A field holds a value that cannot be (a bad enum tag, an impossible count).
        case invalid = 4
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
