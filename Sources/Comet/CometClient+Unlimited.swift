import CometWire
import NIOCore

/// How a `waitTimeout` ended.
public enum WaitTimeoutOutcome: Sendable, Hashable {
    /// The session had no activity on its private channels for the whole time.
    case inactive
    /// The session ended.
    case ended
}

extension CometClient {
    /// Creates an unlimited channel (Eliom's `create_unlimited`) for session `session`, fed by
    /// `source`: the daemon buffers nothing, and `source` is read once per pull, that is when the
    /// reader has acknowledged the previous message, so what it yields can depend on the moment
    /// of the request. The channel closes when `source` ends. Memory caveat (as in Eliom): nothing
    /// bounds what `source` itself holds while nobody reads.
    @discardableResult
    public func createUnlimited<Source: AsyncSequence & Sendable>(
        _ name: String, for session: UInt64, from source: Source
    ) async throws -> ChannelProducer where Source.Element: Sequence<UInt8> {
        let (pulls, sink) = AsyncStream<UInt64>.makeStream(bufferingPolicy: .unbounded)
        let handler = self.pullRegistrar
        let reply = try await request(.createPrivate(name: name, kind: .unlimited, size: 1, session: session)) { body in
            let created = try CreateReply(from: &body)
            handler(created.channel, sink)  // on the loop, before any PULL for it can be read
            return created
        }
        produces(reply.channel, token: (reply.tokenHigh, reply.tokenLow))
        let producer = ChannelProducer(
            client: self, name: name, id: reply.channel, epoch: reply.epoch, token: (reply.tokenHigh, reply.tokenLow))
        Task {
            var iterator = source.makeAsyncIterator()
            // After a reconnect (ReconnectPolicy) an answer lost in flight is given again at the
            // next pull, unless the channel says it landed: each element once.
            var unanswered: Source.Element?
            var answered: UInt64 = 0
            do {
                for await pull in pulls {
                    let element: Source.Element
                    if let kept = unanswered {
                        element = kept
                        unanswered = nil
                    } else {
                        guard let next = try await iterator.next() else { break }
                        element = next
                    }
                    do {
                        answered = try await self.request(.answer(channel: reply.channel, pull: pull, payload: ByteBuffer(bytes: element))) {
                            try PushReply(from: &$0).firstSequence
                        }
                    } catch let error as ConnectionError where error.kind == .lost {
                        let last = try await producer.lastSequence()
                        if last > answered { answered = last } else { unanswered = element }
                    } catch let refusal as CometError where refusal.code == .pullNotRequested {
                        // A pull asked again after a reconnect whose answer landed meanwhile: this
                        // element goes with the next pull.
                        unanswered = element
                    }
                }
            } catch {}
            _ = try? await producer.close()
        }
        return producer
    }

    /// Eliom's `wait_timeout`: returns once session `session` has had no activity on its
    /// private and unlimited channels for `inactivity`, or has ended.
    public func waitTimeout(session: UInt64, inactivity: Duration) async throws -> WaitTimeoutOutcome {
        let ms = UInt64(max(0, inactivity.components.seconds)) * 1000 + UInt64(max(0, inactivity.components.attoseconds / 1_000_000_000_000_000))
        let ended = try await request(.waitTimeout(session: session, milliseconds: ms)) { try WaitTimeoutReply(from: &$0).ended }
        return ended ? .ended : .inactive
    }
}
