import CSystemd
import CometState
import Glibc
import Logging

/// Descriptors passed by the service manager (LISTEN_FDS, LISTEN_FDNAMES): the listening
/// sockets of the socket units, and what this service put in its file-descriptor store before
/// (docs/RESTARTS.md): the image of a planned restart, the connections it names, and the
/// storage of channels and sessions.
enum SocketActivation {
    struct Inherited {
        var listeners: [CInt] = []
        /// Stored descriptors by FDNAME.
        var stored: [String: [CInt]] = [:]
        /// Storage files (channels, sessions), each under a name of its own.
        var state: [(fd: CInt, name: String)] = []

        func take(_ name: String) -> [CInt] { stored[name] ?? [] }
    }

    /// Names cometd gives what it stores.
    static let storedNames: Set<String> = [
        FileDescriptorStore.imageName, FileDescriptorStore.connectionName, FileDescriptorStore.listenerName,
    ]

    /// Sorts the inherited descriptors; any other descriptor is logged and closed. Unsets the LISTEN_* variables.
    static func inherited(logger: Logger) -> Inherited {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        let count = sd_listen_fds_with_names(1, &names)
        defer {
            if let names {
                var i = 0
                while let name = names[i] {
                    free(name)
                    i += 1
                }
                free(names)
            }
        }
        var result = Inherited()
        guard count > 0 else {
            if count < 0 { logger.warning("reading LISTEN_FDS failed", metadata: ["errno": "\(-count)"]) }
            return result
        }
        for index in 0..<count {
            let fd = SD_LISTEN_FDS_START + index
            let name = names?[Int(index)].map { String(cString: $0) } ?? "unknown"
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            if name.hasPrefix(StateStore.namePrefix) {
                result.state.append((fd, name))
            } else if storedNames.contains(name) {
                result.stored[name, default: []].append(fd)
            } else if sd_is_socket_unix(fd, CInt(SOCK_STREAM.rawValue), 1, nil, 0) > 0 {
                let flags = fcntl(fd, F_GETFL)
                _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
                result.listeners.append(fd)
                logger.debug("adopting inherited socket", metadata: ["fd": "\(fd)", "name": "\(name)"])
            } else {
                logger.warning("closing inherited descriptor that is not a listening Unix stream socket", metadata: [
                    "fd": "\(fd)", "name": "\(name)",
                ])
                close(fd)
            }
        }
        return result
    }
}
