import Comet
import CometFederation
import CometWire
import Logging
import NIOCore

/// One exported channel during one connection to cometd: an ordinary subscription from the
/// oldest message the ring holds, handed to the server's link. The link finds where the stream
/// stands for the channel's epoch and publishes after it, so a restart of the bridge or of
/// cometd republishes nothing; what left the ring before the bridge read it is counted as
/// missed (remote readers that need it get FULL).
struct Exporter {
    let name: String
    let rule: ExportRule
    let link: NATSLink
    let logger: Logger

    /// Exports the channel until it is gone; returns when it closed and drained, or was
    /// re-created (the caller starts the next epoch). With `wait`, waits for the channel to be
    /// created and reads it from its first message. Throws when the connection to cometd ends.
    func run(client: CometClient, wait: Bool) async throws {
        guard let subject = NATSMapping.subject(prefix: rule.subjectPrefix, name: name) else {
            logger.warning("channel not exported: its name is not a valid NATS subject", metadata: ["channel": "\(name)"])
            try await Task.sleep(nanoseconds: .max)
            return
        }
        let stream = NATSMapping.stream(prefix: rule.streamPrefix, name: name)
        var position = SubscribePosition.oldest
        var epoch: UInt64?
        var last: UInt64 = 0
        while true {
            let subscription: CometSubscription
            do {
                subscription = try await client.subscribe(name, from: position, epoch: epoch, wait: wait && epoch == nil)
            } catch let error as CometError where error.code == .noSuchChannel || error.code == .epochMismatch {
                // Gone (or re-created) meanwhile: its epoch ends here.
                if let epoch { link.closed(name: name, epoch: epoch, last: last) }
                return
            }
            var iterator = subscription.makeAsyncIterator()
            var payloads: [ByteBuffer] = []
            var first: UInt64 = 0
            /// The link learns the epoch at the subscription's first message (a waiting one starts
            /// when the channel is created); a subscription's epoch never changes.
            var opened = false
            func open() async throws {
                opened = true
                let info = subscription.info
                if epoch != info.epoch {
                    epoch = info.epoch
                    let channel = try await client.channels().first { $0.name == name && $0.scope == 0 && $0.epoch == info.epoch }
                    let target = ExportTarget(
                        name: name, subject: subject, stream: stream, storage: rule.storage, size: Int(channel?.size ?? 1000),
                        maxInFlight: rule.maxInFlight, newest: channel?.kind == .newest, replicas: rule.replicas)
                    link.open(target, epoch: info.epoch, next: max(1, info.nextSequence))
                    logger.info("exporting", metadata: [
                        "channel": "\(name)", "epoch": "\(info.epoch)", "stream": "\(stream)", "replicas": "\(rule.replicas)",
                    ])
                }
            }
            func hand() {
                guard !payloads.isEmpty, let epoch else { return }
                link.pushed(name: name, epoch: epoch, first: first, payloads)
                payloads = []
            }
            do {
                while let message = try await iterator.next() {
                    if !opened { try await open() }
                    if !payloads.isEmpty, message.sequence != first + UInt64(payloads.count) { hand() }
                    if payloads.isEmpty { first = message.sequence }
                    payloads.append(ByteBuffer(bytes: message.payload))
                    last = message.sequence
                    if iterator.buffered == 0 || payloads.count >= 1024 { hand() }
                }
                hand()
                // CLOSED: everything is read; the stream gets its close marker after it.
                if subscription.info.epoch != 0 {
                    if !opened { try await open() }
                    if let epoch { link.closed(name: name, epoch: epoch, last: last) }
                }
                return
            } catch let full as ChannelFull {
                hand()
                // The bridge fell behind the ring: go on from the oldest it holds (the link
                // counts the gap as missed).
                logger.warning("the export fell behind the channel's ring", metadata: [
                    "channel": "\(name)", "after": "\(last)", "first_available": "\(full.firstAvailable)",
                ])
                position = .from(full.firstAvailable)
            } catch is EpochChanged {
                hand()
                if let epoch { link.closed(name: name, epoch: epoch, last: last) }
                return
            }
        }
    }
}
