/// Why a handover image or a storage file cannot be read or made.
public struct StateError: Error, Equatable, CustomStringConvertible {
    public enum Code: UInt8, Sendable {
        /// Not an image at all (wrong magic).
        case notAnImage = 1
        /// Written in a format version this binary does not read.
        case unsupportedFormat = 2
        /// Cut short, or its checksum does not match (a torn or damaged write).
        case damaged = 3
        /// A field holds a value that cannot be (a bad enum tag, an impossible count).
        case invalid = 4
        /// The system refused (memfd_create, ftruncate, mmap).
        case system = 5
        /// A descriptor that is not a storage file of a layout this binary reads.
        case notStorage = 6
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
