import CometChannels
import CometWire
import NIOCore

extension Broker {
    /// Stops the daemon's work within `drain` (plus a second for the last writes), whatever clients do.
    ///
    /// Every channel closes; readers get what is buffered, then CLOSED. A reader that has not
    /// received everything when `drain` ends gets FAILED with SHUTTING_DOWN naming the last
    /// sequence number written to it. Every connection then gets ERROR SHUTTING_DOWN and is closed.
    func shutdown(drain: TimeAmount) -> EventLoopFuture<Void> {
        isShuttingDown = true
        sweeper?.cancel()
        for relay in Array(links.relays.values) { endRelay(relay) }
        stopMirrors()
        for channel in registry.closeEverything() {
            channelClosed(channel)
        }
        for channel in privateChannels.values where !channel.isClosed {
            closePrivate(channel)
        }
        deliverDirty()
        let done = eventLoop.makePromise(of: Void.self)
        let deadline = eventLoop.now + drain
        @Sendable func poll() {
            let drained = connections.values.allSatisfy { conn in
                conn.isClosing || (conn.subscriptions.values.allSatisfy { $0.source == nil } && conn.pendingOutput == 0)
            }
            if drained || eventLoop.now >= deadline {
                finishShutdown().cascade(to: done)
            } else {
                eventLoop.scheduleTask(in: .milliseconds(10)) { poll() }
            }
        }
        poll()
        return done.futureResult
    }

    /// Tells every connection, waits up to a second for the words to leave, then closes them all.
    private func finishShutdown() -> EventLoopFuture<Void> {
        let closes = connections.values.map { conn -> EventLoopFuture<Void> in
            if conn.isClosing { return conn.context.channel.closeFuture }
            for (id, sub) in conn.subscriptions.sorted(by: { $0.key < $1.key }) where sub.source != nil {
                ServerFrame.failed(
                    subscription: id, code: .shuttingDown,
                    message: "the daemon stopped before this subscription had everything; the last sequence written to it was \(sub.cursor - 1)"
                ).encode(into: &conn.outbox)
            }
            ServerFrame.writeError(
                requestID: CometProtocol.connectionRequestID, code: .shuttingDown,
                message: "the daemon is shutting down", into: &conn.outbox)
            let context = conn.context
            let out = conn.outbox
            conn.outbox = context.channel.allocator.buffer(capacity: 0)
            conn.isClosing = true
            let closed = eventLoop.makePromise(of: Void.self)
            let channel = context.channel
            context.writeAndFlush(NIOAny(out)).whenComplete { _ in channel.close(promise: nil) }
            context.channel.closeFuture.cascade(to: closed)
            return closed.futureResult
        }
        let all = EventLoopFuture.andAllComplete(closes, on: eventLoop)
        // A peer that takes nothing does not hold the daemon: close whatever is left after a second.
        let channels = connections.values.map(\.context.channel)
        let timer = eventLoop.scheduleTask(in: .seconds(1)) {
            for channel in channels { channel.close(promise: nil) }
        }
        return all.always { _ in timer.cancel() }
    }
}
