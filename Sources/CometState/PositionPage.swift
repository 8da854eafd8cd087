import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a protected mapped reader says how far it read, without a system call (docs/PROTOCOL.md
/// §6.23, "Position page"): one page of shared memory per subscription, written by the reader
/// (`read`) and by the daemon (`wanted`), read by both. Sealed against resizing, so that nothing
/// a reader does to it can fault the daemon; what the reader writes is a claim about itself only
/// (the daemon clamps it to what it announced). The daemon keeps the mapping, not the descriptor:
/// a page costs no file descriptor once handed over.
public final class PositionPage: @unchecked Sendable {  // used on the broker's loop only
    /// Bytes of the file (and of the mapping).
    public static let length = 4096
    /// Offsets of the two fields (own cache lines: the reader writes one, the daemon the other).
    public static let readOffset = 0
    public static let wantedOffset = 64

    private let base: UnsafeMutableRawPointer
    /// Called once the page is gone (its owner's count of pages goes down).
    private let released: () -> Void

    private init(base: UnsafeMutableRawPointer, released: @escaping () -> Void) {
        self.base = base
        self.released = released
    }

    /// A new page whose `read` starts at `start`, and its descriptor (read-write, close-on-exec):
    /// hand it to the reader, then close it. `released` runs when the page is gone.
    public static func create(start: UInt64, released: @escaping () -> Void = {}) throws(StateError) -> (PositionPage, Int32) {
        let fd = Int32(memfdCreate("comet-position", sealable: true))
        guard fd >= 0 else { throw StateError(.system, "memfd_create: \(String(cString: strerror(errno)))") }
        guard ftruncate(fd, off_t(length)) == 0,
            let mapped = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED
        else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw StateError(.system, "cannot make a position page: \(reason)")
        }
        // The reader may write it, never resize it (a shrunk file would fault the daemon's reads).
        guard fcntl(fd, RingFile.addSeals, RingFile.sealShrink | RingFile.sealGrow) == 0 else {
            let reason = String(cString: strerror(errno))
            munmap(mapped, length)
            close(fd)
            throw StateError(.system, "cannot seal a position page: \(reason)")
        }
        mapped.storeBytes(of: start, toByteOffset: readOffset, as: UInt64.self)
        atomicMemoryFence(ordering: .releasing)
        return (PositionPage(base: mapped, released: released), fd)
    }

    deinit {
        munmap(base, Self.length)
        released()
    }

    @inline(__always) private func load(_ offset: Int) -> UInt64 { base.load(fromByteOffset: offset, as: UInt64.self) }
    @inline(__always) private func store(_ offset: Int, _ value: UInt64) { base.storeBytes(of: value, toByteOffset: offset, as: UInt64.self) }

    /// What the reader says: the first message it has not read (any value: the caller clamps it).
    public var read: UInt64 {
        let value = load(Self.readOffset)
        atomicMemoryFence(ordering: .acquiring)
        return value
    }

    /// Asks the reader to say how far it read with ACK once it stored `read` again, then returns
    /// `read` as it is after the request (both sides fence between their store and their load,
    /// so either the daemon sees the reader's progress or the reader sees the request).
    public func want() -> UInt64 {
        store(Self.wantedOffset, 1)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return read
    }

    /// No producer waits for the reader any more.
    public func settle() {
        if load(Self.wantedOffset) != 0 { store(Self.wantedOffset, 0) }
    }

    /// Whether the daemon asks for an ACK (for tests and the reader's side).
    public var wanted: Bool { load(Self.wantedOffset) != 0 }
}
