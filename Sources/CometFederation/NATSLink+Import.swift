import CNATSBridge
import NIOCore

/// Imports on the link's worker: one JetStream push consumer per feed, re-created on trouble.
extension NATSLink {

    func subscribe(_ feed: ImportFeed) {
        unsubscribe(feed)
        guard let link, connected else {
            if !feed.permanent, !feed.everSubscribed {
                feed.post(.failed(.unreachable, failure ?? "NATS at \(server.url) is not reachable"))
                feeds[ObjectIdentifier(feed)] = nil
            }
            return
        }
        feed.post(.restarted)
        let token = Unmanaged.passRetained(FeedToken(feed: feed))
        var empty = false
        var noStream = false
        var error = [CChar](repeating: 0, count: 512)
        let sub = cn_subscribe(link, feed.subject, { ctx, delivery in
            let token = Unmanaged<FeedToken>.fromOpaque(ctx!).takeUnretainedValue()
            guard let feed = token.feed, let d = delivery?.pointee else { return }
            switch d.event {
            case Int32(CN_MESSAGE) where d.count > 1:
                let bytes = UnsafeRawBufferPointer(start: d.data, count: Int(d.len))
                if let messages = MessageRun.split(bytes, count: Int(d.count), allocator: token.allocator) {
                    feed.post(contentsOf: messages.enumerated().map { .message(epoch: d.epoch, sequence: d.seq + UInt64($0.offset), payload: $0.element) })
                } else {
                    feed.post(.foreign)
                }
            case Int32(CN_MESSAGE):
                let payload = d.len > 0
                    ? token.allocator.buffer(bytes: UnsafeRawBufferPointer(start: d.data, count: Int(d.len)))
                    : token.allocator.buffer(capacity: 0)
                feed.post(.message(epoch: d.epoch, sequence: d.seq, payload: payload))
            case Int32(CN_OPEN):
                feed.post(.open(epoch: d.epoch, next: d.seq))
            case Int32(CN_CLOSE):
                feed.post(.close(epoch: d.epoch, last: d.seq))
            default:
                feed.post(.foreign)
            }
            if !token.caughtUp, d.pending == 0 {
                token.caughtUp = true
                feed.post(.caughtUp)
            }
        }, token.toOpaque(), 2000, &empty, &noStream, &error, error.count)
        guard let sub else {
            token.release()
            let why = Self.text(error)
            if !feed.permanent, !feed.everSubscribed {
                feed.post(.failed(noStream ? .noSuchChannel : .unreachable, noStream ? "no JetStream stream holds subject \(feed.subject)" : why))
                feeds[ObjectIdentifier(feed)] = nil
            } else {
                // A configured import of a subject nothing was exported to yet: its readers are
                // answered (the channel does not exist yet) instead of waiting for it.
                if noStream, feed.permanent, !feed.everSubscribed { feed.post(.caughtUp) }
                // A stream that does not exist yet is looked for every 2 s at most; other failures
                // back off to 10 s.
                feed.post(.trouble(noStream ? "no JetStream stream holds subject \(feed.subject)" : why))
                let delay = feed.retryDelay
                feed.retryDelay = min(feed.retryDelay * 2, noStream ? .seconds(2) : .seconds(10))
                logger.notice("cannot read the JetStream subject yet; retrying", metadata: [
                    "subject": "\(feed.subject)", "error": "\(why)", "in_ms": "\(delay.nanoseconds / 1_000_000)",
                ])
                timers.scheduleTask(in: delay) { [weak self] in self?.post(.resubscribe(feed)) }
            }
            return
        }
        feed.sub = sub
        feed.token = token
        if empty {
            if !feed.permanent, !feed.everSubscribed {
                unsubscribe(feed)
                feed.post(.failed(.noSuchChannel, "nothing was exported to subject \(feed.subject)"))
                feeds[ObjectIdentifier(feed)] = nil
                return
            }
            token.takeUnretainedValue().caughtUp = true
            feed.post(.caughtUp)
        }
        feed.everSubscribed = true
        feed.retryDelay = .seconds(1)
    }

    func unsubscribe(_ feed: ImportFeed) {
        guard let sub = feed.sub else { return }
        cn_unsubscribe(sub)
        feed.sub = nil
        feed.token?.release()
        feed.token = nil
    }
}
