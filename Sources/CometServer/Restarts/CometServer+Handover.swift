import CometState
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Live upgrade and restart (docs/RESTARTS.md): the whole state as an image, the sockets it
/// names, and taking both over in the next process.
extension CometServer {
    /// Runs `body` on the event loop with an image of the whole state and the descriptors it
    /// names (listeners, then connections), with nothing happening in between: `body` typically
    /// writes the image and calls `execve`. If `body` returns, the server goes on unchanged.
    public func withImage<T: Sendable>(_ body: @escaping @Sendable (DaemonImage) throws -> T) async throws -> T {
        try await eventLoop.submit {
            let cookies = SocketCookies.descriptorsByCookie()
            let listenerFDs = self.listenerChannels.compactMap { SocketCookies.cookie(of: $0).flatMap { cookies[$0] } }
            let image = self.broker.image(listeners: listenerFDs) { conn in
                guard let cookie = conn.socketCookie, let fd = cookies[cookie] else { return nil }
                return (fd, cookie)
            }
            return try body(image)
        }.get()
    }

    /// Takes over what a previous process handed over: channels, sessions and subscriptions,
    /// then its listening sockets and connections. Connections handle nothing until all are back.
    /// Returns how many connections were carried over.
    /// - Parameters:
    ///   - sockets: where the connections' sockets are now, by SO_COOKIE (passed back by the
    ///     service manager); nil: at the numbers the image names, with its listeners (execve).
    ///   - listeners: with `sockets`, the listening sockets to serve (the service manager's).
    ///     They are adopted only once the image's state is back: a connection accepted before
    ///     would be numbered as one of the carried connections.
    @discardableResult
    public func restore(_ image: DaemonImage, sockets: [UInt64: Int32]? = nil, listeners: [Int32] = []) async throws -> Int {
        try await eventLoop.submit { self.broker.restore(image) }.get()
        for fd in sockets == nil ? image.listeners : listeners { try await adopt(descriptor: fd) }
        // Every socket is registered at once (one wait for all, not one per connection).
        let started = NIODeadline.now()
        // Made on the loop itself: no hop between threads per connection.
        let registrations = try await eventLoop.submit { () -> [(Int32, EventLoopFuture<Channel>)] in
            image.connections.compactMap { saved in
                guard let fd = sockets == nil ? saved.descriptor : sockets?[saved.cookie] else { return nil }
                return (fd, self.connectionBootstrap(carrying: saved).withConnectedSocket(fd))
            }
        }.get()
        var adopted = 0
        for (fd, registration) in registrations {
            do {
                _ = try await registration.get()
                adopted += 1
            } catch {
                logger.warning("could not take over a connection", metadata: ["fd": "\(fd)", "error": "\(error)"])
                close(fd)
            }
        }
        try await eventLoop.submit { self.broker.finishAdoption() }.get()
        let took = (NIODeadline.now() - started).nanoseconds / 1_000_000
        logger.notice("state taken over", metadata: [
            "from_version": "\(image.softwareVersion)", "connections": "\(adopted)", "channels": "\(image.channels.count)",
            "private_channels": "\(image.privateChannels.count)", "sessions": "\(image.sessions.count)", "adoption_ms": "\(took)",
        ])
        return adopted
    }

    /// Keeps channels and sessions in `store` from now on (docs/RESTARTS.md, "Crash").
    public func useStorage(_ store: StateStore) async throws {
        try await eventLoop.submit { self.broker.stateStore = store }.get()
    }

    /// After a crash: puts back what the storage files passed back hold. Channels wait for their
    /// producers (ADOPT) and sessions for their clients (RESUME) for the session grace period.
    public func recover(_ recovered: StateStore.Recovered) async throws {
        let image = Broker.image(recovered: recovered, now: NIODeadline.now().uptimeNanoseconds)
        try await eventLoop.submit {
            self.broker.restore(image)
            self.broker.finishAdoption()
        }.get()
        logger.notice("recovered after a crash", metadata: [
            "channels": "\(image.channels.count)", "private_channels": "\(image.privateChannels.count)",
            "sessions": "\(image.sessions.count)", "unreadable_files": "\(recovered.unreadable)",
        ])
    }

    private func connectionBootstrap(carrying saved: ConnectionImage) -> ClientBootstrap {
        let broker = self.broker
        let watermark = ChannelOptions.Types.WriteBufferWaterMark(
            low: configuration.outboundLowWatermark, high: configuration.outboundHighWatermark)
        return ClientBootstrap(group: eventLoop)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelOption(ChannelOptions.writeBufferWaterMark, value: watermark)
            .channelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            .channelOption(ChannelOptions.recvAllocator, value: Self.receiveBuffers)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(broker: broker, carrying: saved))
                }
            }
    }
}

/// Finds the descriptor behind a NIO channel: NIO does not say, but the kernel gives every
/// socket a unique cookie (SO_COOKIE), readable both from the channel and from each descriptor.
enum SocketCookies {
    static let option: Int32 = 57  // SO_COOKIE

    static func cookie(of channel: Channel) -> UInt64? {
        guard let provider = channel as? SocketOptionProvider else { return nil }
        let box = NIOLoopBoundBox<UInt64?>(nil, eventLoop: channel.eventLoop)
        let future: EventLoopFuture<UInt64> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(option))
        future.whenSuccess { box.value = $0 }
        return box.value
    }

    /// Every open socket descriptor of this process, by cookie.
    static func descriptorsByCookie() -> [UInt64: Int32] {
        var result: [UInt64: Int32] = [:]
        forEachSocket { fd, cookie in
            result[cookie] = fd
            return true
        }
        return result
    }

    /// The cookie of the socket behind `fd`; nil when it is not a socket.
    static func cookie(ofDescriptor fd: Int32) -> UInt64? {
        var cookie: UInt64 = 0
        var length = socklen_t(MemoryLayout<UInt64>.size)
        return getsockopt(fd, SOL_SOCKET, option, &cookie, &length) == 0 ? cookie : nil
    }

    /// Calls `body` with each open socket descriptor of this process (but those in `skipping`)
    /// and its cookie, until it returns false.
    static func forEachSocket(skipping: Set<Int32> = [], _ body: (Int32, UInt64) -> Bool) {
        guard let dir = opendir("/proc/self/fd") else { return }
        defer { closedir(dir) }
        let own = dirfd(dir)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd != own, !skipping.contains(fd), let cookie = cookie(ofDescriptor: fd) else { continue }
            if !body(fd, cookie) { return }
        }
    }
}

extension CometServer {
    /// `descriptors` by their sockets' SO_COOKIE (descriptors that are not sockets are left out).
    public static func socketsByCookie(_ descriptors: [Int32]) -> [UInt64: Int32] {
        var result: [UInt64: Int32] = [:]
        for fd in descriptors {
            if let cookie = SocketCookies.cookie(ofDescriptor: fd) { result[cookie] = fd }
        }
        return result
    }
}
