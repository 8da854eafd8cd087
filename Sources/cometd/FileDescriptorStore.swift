import CSystemd
import CometState
import Glibc
import Logging
import NIOCore

/// systemd's file-descriptor store (sd_notify(3) FDSTORE=1, FDNAME=, FDSTOREREMOVE=1): what it
/// keeps for cometd across a restart of the service and passes back with LISTEN_FDS
/// (docs/RESTARTS.md). Without a service manager (no NOTIFY_SOCKET) it is not used.
struct FileDescriptorStore: Sendable {
    /// The image of a planned restart.
    static let imageName = "comet-image"
    /// The connections it names, and the listening sockets cometd bound itself.
    static let connectionName = "comet-conn"
    static let listenerName = "comet-listen"
    /// At most this many descriptors go in one notification (SCM_RIGHTS carries 253).
    static let batch = 250

    let enabled: Bool

    /// `mode`: "auto" (when a service manager listens and, where systemd says so with $FDSTORE,
    /// keeps descriptors), "on" or "off".
    init(mode: String) {
        let manager = getenv("NOTIFY_SOCKET") != nil
        let allowed = getenv("FDSTORE").map { (Int(String(cString: $0)) ?? 0) > 0 } ?? true
        switch mode {
        case "on": enabled = manager
        case "off": enabled = false
        default: enabled = manager && allowed
        }
    }

    /// Hands `descriptors` to the store under `name`. True when the service manager took the notifications.
    @discardableResult
    func add(_ descriptors: [Int32], name: String) -> Bool {
        guard enabled else { return false }
        var ok = true
        var start = 0
        while start < descriptors.count {
            let part = Array(descriptors[start..<min(descriptors.count, start + Self.batch)])
            let sent = part.withUnsafeBufferPointer {
                sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=\(name)", $0.baseAddress, UInt32($0.count))
            }
            ok = ok && sent > 0
            start += Self.batch
        }
        return ok
    }

    /// Asks the store to close and forget everything stored under `name`.
    func remove(_ name: String) {
        guard enabled else { return }
        _ = sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=\(name)")
    }

    /// A memfd holding `bytes`, positioned at its start.
    static func memfd(named name: String, holding bytes: ByteBuffer) throws -> Int32 {
        let fd = comet_memfd_create(name, 1 /* MFD_CLOEXEC */)
        guard fd >= 0 else { throw LiveUpgrade.Refused(description: "memfd_create: \(String(cString: strerror(errno)))") }
        var written = 0
        let ok = bytes.withUnsafeReadableBytes { raw -> Bool in
            while written < raw.count {
                let n = write(fd, raw.baseAddress! + written, raw.count - written)
                if n <= 0 { return false }
                written += n
            }
            return true
        }
        guard ok, lseek(fd, 0, SEEK_SET) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw LiveUpgrade.Refused(description: "cannot write the image: \(reason)")
        }
        return fd
    }

    /// Everything `fd` holds, read from its start.
    static func contents(of fd: Int32) throws -> ByteBuffer {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw LiveUpgrade.Refused(description: "fstat: errno \(errno)") }
        let size = Int(info.st_size)
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        var offset = 0
        try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            while offset < size {
                let n = pread(fd, raw.baseAddress! + offset, size - offset, off_t(offset))
                guard n > 0 else { throw LiveUpgrade.Refused(description: "cannot read the image: errno \(errno)") }
                offset += n
            }
            return size
        }
        return buffer
    }

    /// A planned restart: the image, its connections and the listening sockets cometd bound
    /// itself go into the store. Called on the event loop with nothing else happening; the
    /// caller exits right after.
    func save(_ image: DaemonImage, ownListeners: Bool) throws {
        let fd = try Self.memfd(named: Self.imageName, holding: ImageCodec.encode(image))
        // Anything a previous restart left behind goes first.
        remove(Self.imageName)
        remove(Self.connectionName)
        remove(Self.listenerName)
        add(image.connections.map(\.descriptor), name: Self.connectionName)
        if ownListeners { add(image.listeners, name: Self.listenerName) }
        // The image last: a next process that finds it finds what it names.
        guard add([fd], name: Self.imageName) else {
            close(fd)
            throw LiveUpgrade.Refused(description: "the service manager did not take the image")
        }
        close(fd)
    }
}
