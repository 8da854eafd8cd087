import NIOCore

/// Splits a byte stream into frame bodies: a `UInt32` big-endian length, then that many bytes.
///
/// Single-step and peek-before-consume: `nextFrame(from:)` returns `nil` and consumes nothing until a
/// whole frame is buffered, and rejects a length above `maxFrameSize` as soon as the prefix is seen,
/// before any body is buffered.
public struct FrameDecoder: Sendable {
    /// Largest body length accepted.
    public var maxFrameSize: UInt32

    public init(maxFrameSize: UInt32 = CometProtocol.defaultMaxFrameSize) {
        self.maxFrameSize = maxFrameSize
    }

    /// The next complete frame body, or `nil` if more bytes are needed.
    /// - Throws: `WireError` with `.frameTooLarge` or `.malformedFrame` (an empty body).
    public func nextFrame(from buffer: inout ByteBuffer) throws(WireError) -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length <= maxFrameSize else {
            throw WireError(.frameTooLarge, "frame of \(length) bytes exceeds the maximum of \(maxFrameSize)")
        }
        guard length > 0 else { throw WireError.malformed("empty frame") }
        guard buffer.readableBytes >= CometProtocol.lengthPrefixSize + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: CometProtocol.lengthPrefixSize)
        return buffer.readSlice(length: Int(length))!
    }

    /// How many more bytes complete the frame `buffer` begins with, when it holds its length
    /// prefix, a valid length and not the whole frame yet; nil otherwise (a whole frame, a length
    /// still cut, or one `nextFrame` refuses).
    public func bytesMissing(in buffer: ByteBuffer) -> Int? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self), length > 0, length <= maxFrameSize else {
            return nil
        }
        let whole = CometProtocol.lengthPrefixSize + Int(length)
        return buffer.readableBytes < whole ? whole - buffer.readableBytes : nil
    }
}

extension ByteBuffer {
    /// Writes a frame: reserves the length prefix, lets `body` write the body, then fills the prefix in.
    @inlinable
    public mutating func writeFrame(_ body: (inout ByteBuffer) -> Void) {
        let start = writerIndex
        writeInteger(UInt32(0))
        body(&self)
        setInteger(UInt32(writerIndex - start - CometProtocol.lengthPrefixSize), at: start)
    }

    /// Writes a `u16` length and the UTF-8 bytes of `string`.
    @inlinable
    public mutating func writeWireString(_ string: String) {
        let lengthIndex = writerIndex
        writeInteger(UInt16(0))
        let count = writeString(string)
        setInteger(UInt16(truncatingIfNeeded: count), at: lengthIndex)
    }

    /// Reads a `u16`-length-prefixed string.
    mutating func readWireString() throws(WireError) -> String {
        guard let length = readInteger(as: UInt16.self) else { throw WireError.malformed("truncated string length") }
        guard let string = readString(length: Int(length)) else { throw WireError.malformed("truncated string") }
        return string
    }

    mutating func readWire<T: FixedWidthInteger>(_ type: T.Type, _ field: StaticString) throws(WireError) -> T {
        guard let value = readInteger(as: T.self) else { throw WireError.malformed("truncated field \(field)") }
        return value
    }

    func expectEnd(_ what: StaticString) throws(WireError) {
        guard readableBytes == 0 else {
            throw WireError.malformed("\(readableBytes) unexpected trailing bytes in \(what)")
        }
    }
}
