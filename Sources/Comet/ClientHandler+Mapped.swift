import CometWire
import NIOCore
import NIOPosix

/// Mapped subscriptions (docs/PROTOCOL.md §6.23): messages are copied from the channel's ring as
/// the subscriber asks for them, up to what RING_ADVANCED announced; the same batches, the same
/// back-pressure and the same endings as a subscription read from the socket.
extension ClientHandler {
    /// At most this many messages are copied from a ring before they are handed on (and the
    /// subscriber's appetite checked again).
    static let ringChunk = 1024

    func ringAdvanced(_ subscription: UInt32, last: UInt64, ticket: UInt64, report: Bool, held: Bool, newest: Bool) {
        guard let sink = sinks[subscription] else { return }
        if case .socket = sink.path, sink.returnsToRing, ticket != 0 {
            // Detached before, caught up since: back to the ring, from the message after the last
            // one the socket brought (every MESSAGE sent before this event has been read).
            sink.path = .mapped(MappedReading())
        }
        guard case .mapped(var reading) = sink.path else {
            end(subscription, CometError(code: .unsupported, message: "the daemon sent RING_ADVANCED for a subscription read from the socket"))
            send(.unsubscribe(subscription: subscription)) { _ in }
            return
        }
        reading.announced = max(reading.announced, last)
        reading.held = held
        reading.newest = newest
        reading.reportWanted = reading.reportWanted || report
        sink.path = .mapped(reading)
        if ticket != 0 {
            fetchRing(sink, ticket: ticket)
        } else {
            pump(sink)
        }
    }

    /// Redeems `ticket` off the event loop; input waits meanwhile (events after this one may need
    /// the new file), then goes on.
    private func fetchRing(_ sink: SubscriptionSink, ticket: UInt64) {
        guard let context else { return }
        fetchingRing = true
        let path = socketPath
        let serverID = sink.serverID
        let connection = connections
        NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) {
            try MappedRing.fetch(path: path, ticket: ticket)
        }.whenComplete { result in
            guard connection == self.connections else { return }
            self.fetchingRing = false
            if self.sinks[serverID] === sink, case .mapped(var reading) = sink.path {
                switch result {
                case .success(let ring):
                    reading.ring = ring
                    sink.path = .mapped(reading)
                    sink.info.withLockedValue { $0.mapped = true }
                    self.pump(sink)
                case .failure(let error as CometError) where error.code == .badToken:
                    // The ring moved again since: the newer ticket follows. Read what this file holds.
                    self.pump(sink)
                case .failure(let error as ConnectionError):
                    // The daemon closed or refused the ring's connection: it is most likely going
                    // away (a crash, a restart), and this connection with it — a reconnection then
                    // subscribes again. Still connected a second later: the ring cannot be had.
                    self.endUnlessReconnecting(sink, error, generation: connection)
                case .failure(let error):
                    self.sinks[serverID] = nil
                    self.finish(sink, error)
                    self.send(.unsubscribe(subscription: serverID)) { _ in }
                }
            }
            self.resumeInput()
        }
    }

    /// Ends `sink` with `error` in a second, unless its connection went away meanwhile (the
    /// reconnection, if any, subscribes it again) or it got a ring after all.
    private func endUnlessReconnecting(_ sink: SubscriptionSink, _ error: Error, generation: Int) {
        guard let loop = context?.eventLoop else { return }
        loop.scheduleTask(in: .seconds(1)) {
            guard generation == self.connections, self.context != nil, self.sinks[sink.serverID] === sink,
                self.reconnection?.isReconnecting != true, case .mapped(let reading) = sink.path, reading.ring == nil
            else { return }
            self.sinks[sink.serverID] = nil
            self.finish(sink, error)
            self.send(.unsubscribe(subscription: sink.serverID)) { _ in }
        }
    }

    /// Decodes what arrived while a ring was fetched, and reads on.
    private func resumeInput() {
        guard let context else { return }
        if var input = pendingBytes {
            pendingBytes = nil
            consume(&input, context: context)
        }
        deliverBatches()
        if !fetchingRing, pausedSinks == 0, readHeld {
            readHeld = false
            context.read()
        }
    }

    /// Copies what the ring holds for `sink`, up to what was announced, while its subscriber
    /// wants more (`all`: regardless, before the subscription ends or leaves the ring).
    func pump(_ sink: SubscriptionSink, all: Bool = false) {
        guard case .mapped(var reading) = sink.path, let ring = reading.ring else { return }
        while sink.last < reading.announced, all || !sink.paused {
            switch ring.read(sink.last + 1) {
            case .message(let payload):
                sink.last += 1
                if sink.batch.isEmpty { touched.append(sink) }
                sink.batch.append(CometMessage(sequence: sink.last, payload: payload))
                if !all, sink.batch.count >= Self.ringChunk { handOn(sink) }
            case .overtaken(let first) where reading.newest:
                // A newest channel moved on: its latest value is what there is to read.
                sink.last = first - 1
            case .overtaken(let first):
                // A held reader is detached by the daemon (RING_DETACHED) or told FULL.
                if reading.held { return }
                // FULL, as a socket reader would get it; the daemon forgets the subscription too.
                sink.path = .socket
                sinks[sink.serverID] = nil
                finish(sink, ChannelFull(channel: sink.name, firstAvailable: first))
                send(.unsubscribe(subscription: sink.serverID)) { _ in }
                return
            case .notHere:
                return  // the ring moved to another file; its ticket is on its way
            }
        }
        // How far it read goes into the position page; an ACK too when the page asks (a producer
        // waits) or, without a page, when RING_ADVANCED asked and all it announced was read.
        var due = ring.say(readUpTo: sink.last + 1)
        if reading.reportWanted, sink.last >= reading.announced {
            reading.reportWanted = false
            due = true
        }
        if due, sink.last > reading.acknowledged {
            reading.acknowledged = sink.last
            send(.ack(subscription: sink.serverID, sequence: sink.last)) { _ in }
        }
        sink.path = .mapped(reading)
    }

    /// Hands `sink`'s batch to its subscriber now; pauses it when the subscriber has enough.
    private func handOn(_ sink: SubscriptionSink) {
        let batch = sink.batch
        sink.batch = []
        if sink.source.yield(contentsOf: CollectionOfOne(batch)) == .stopProducing, !sink.paused {
            sink.paused = true
            pausedSinks += 1
        }
    }

    /// The subscription is served over the socket from here on (RING_DETACHED, or MESSAGE frames
    /// after a live upgrade): what was announced is read first (`drain`), then the mapping goes.
    func leaveRing(_ sink: SubscriptionSink, drain: Bool = true) {
        if drain { pump(sink, all: true) }
        guard case .mapped = sink.path else { return }
        sink.path = .socket
        sink.info.withLockedValue { $0.mapped = false }
    }
}
