import CometServer
import CometState
import Glibc
import Logging

/// What a planned restart left in the file-descriptor store (docs/RESTARTS.md): the image, the
/// connections it names (found by SO_COOKIE, since they come back under other numbers), and the
/// listening sockets cometd had bound itself.
struct RestartFromStore {
    let image: DaemonImage
    let listeners: [Int32]
    let sockets: [UInt64: Int32]

    /// Takes the image out of `inherited`; nil when there is none or it cannot be read (then the
    /// stored connections are closed: nobody can serve them). The store forgets the image and
    /// the connections now: they are this process's.
    static func take(_ inherited: SocketActivation.Inherited, store: FileDescriptorStore, logger: Logger) -> RestartFromStore? {
        let images = inherited.take(FileDescriptorStore.imageName)
        let connections = inherited.take(FileDescriptorStore.connectionName)
        var stored = inherited.take(FileDescriptorStore.listenerName)
        store.remove(FileDescriptorStore.imageName)
        store.remove(FileDescriptorStore.connectionName)
        store.remove(FileDescriptorStore.listenerName)
        defer { images.forEach { close($0) } }
        guard let fd = images.last else {
            (connections + stored).forEach { close($0) }
            return nil
        }
        let image: DaemonImage
        do {
            image = try ImageFile.read(fd)
        } catch {
            logger.error("the image of the last restart cannot be read; starting afresh", metadata: ["error": "\(error)"])
            (connections + stored).forEach { close($0) }
            return nil
        }
        // A listening socket passed by the socket unit is also stored when cometd bound it: once is enough.
        let known = Set(CometServer.socketsByCookie(inherited.listeners).keys)
        let storedByCookie = CometServer.socketsByCookie(stored)
        stored = storedByCookie.filter { !known.contains($0.key) }.map(\.value).sorted()
        for (cookie, fd) in storedByCookie where known.contains(cookie) { close(fd) }
        for fd in stored {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        // Connections the image does not name (a store left over from an older restart) are closed.
        let named = Set(image.connections.map(\.cookie))
        var sockets: [UInt64: Int32] = [:]
        for (cookie, fd) in CometServer.socketsByCookie(connections) {
            if named.contains(cookie) { sockets[cookie] = fd } else { close(fd) }
        }
        return RestartFromStore(image: image, listeners: inherited.listeners + stored, sockets: sockets)
    }
}
