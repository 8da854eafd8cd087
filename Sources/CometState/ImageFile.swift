import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// An image in a memfd: how one process hands it to the next (by inheritance across `execve`,
/// or through the service manager's file-descriptor store).
public enum ImageFile {
    /// A close-on-exec memfd holding `image` in `format`, positioned at its start.
    public static func write(_ image: DaemonImage, named name: String, format: UInt16 = ImageCodec.formatVersion) throws(StateError) -> Int32 {
        let bytes = ImageCodec.encode(image, format: format)
        let fd = Int32(memfdCreate(name))
        guard fd >= 0 else { throw StateError(.system, "memfd_create: \(String(cString: strerror(errno)))") }
        var written = 0
        let ok = bytes.withUnsafeReadableBytes { raw -> Bool in
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n <= 0 { return false }
                written += n
            }
            return true
        }
        guard ok, lseek(fd, 0, SEEK_SET) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw StateError(.system, "cannot write the image: \(reason)")
        }
        return fd
    }

    /// The image `fd` holds, read from its start (the descriptor stays open).
    public static func read(_ fd: Int32) throws(StateError) -> DaemonImage {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StateError(.system, "fstat: errno \(errno)") }
        let size = Int(info.st_size)
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        var failed = false
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            var offset = 0
            while offset < size {
                let n = pread(fd, raw.baseAddress! + offset, size - offset, off_t(offset))
                guard n > 0 else {
                    failed = true
                    return offset
                }
                offset += n
            }
            return size
        }
        guard !failed else { throw StateError(.damaged, "cannot read the image: errno \(errno)") }
        return try ImageCodec.decode(buffer)
    }
}
