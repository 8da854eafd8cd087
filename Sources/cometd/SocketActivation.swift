import CSystemd
import Glibc
import Logging

/// Sockets passed by the service manager (LISTEN_FDS, LISTEN_FDNAMES).
enum SocketActivation {
    /// The inherited descriptors that are listening Unix stream sockets. Any other inherited
    /// descriptor is logged and closed. Unsets the LISTEN_* variables.
    static func listeningSockets(logger: Logger) -> [CInt] {
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
        guard count > 0 else {
            if count < 0 { logger.warning("reading LISTEN_FDS failed", metadata: ["errno": "\(-count)"]) }
            return []
        }
        var sockets: [CInt] = []
        for index in 0..<count {
            let fd = SD_LISTEN_FDS_START + index
            let name = names?[Int(index)].map { String(cString: $0) } ?? "unknown"
            if sd_is_socket_unix(fd, CInt(SOCK_STREAM.rawValue), 1, nil, 0) > 0 {
                let flags = fcntl(fd, F_GETFL)
                _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                sockets.append(fd)
                logger.debug("adopting inherited socket", metadata: ["fd": "\(fd)", "name": "\(name)"])
            } else {
                logger.warning("closing inherited descriptor that is not a listening Unix stream socket", metadata: [
                    "fd": "\(fd)", "name": "\(name)",
                ])
                close(fd)
            }
        }
        return sockets
    }
}

