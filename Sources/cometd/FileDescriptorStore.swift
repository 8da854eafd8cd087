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

    /// A planned restart: the image, its connections and the listening sockets cometd bound
    /// itself go into the store. Called on the event loop with nothing else happening; the
    /// caller exits right after.
    func save(_ image: DaemonImage, ownListeners: Bool) throws {
        let fd = try ImageFile.write(image, named: Self.imageName)
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
