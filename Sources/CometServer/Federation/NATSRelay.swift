import CometChannels
import CometFederation
import NIOCore

/// Identifies a NATS import: one JetStream consumer serves all its local readers.
struct NATSRelayKey: Hashable {
    /// `nats://HOST:PORT`.
    let server: String
    let subject: String
    let newest: Bool
}

/// The local end of a JetStream subject an exporting cometd publishes to: one ephemeral
/// consumer reading the subject from the start of what the stream keeps, and a local channel
/// that mirrors it with the exporter's sequence numbers and epoch.
///
/// Either a reader's SUBSCRIBE_EXTERNAL made it (it ends with its last local reader), or the
/// configuration declared it under a local name (it lives as long as the daemon).
final class NATSRelay: @unchecked Sendable {  // confined to the broker's loop
    let key: NATSRelayKey
    /// The configured local name; nil for a reader's SUBSCRIBE_EXTERNAL.
    let localName: String?
    /// The name readers know the mirror by.
    let name: String
    let link: NATSLink
    var feed: ImportFeed?
    /// The mirror of the current epoch; nil until the first message or marker.
    var channel: SiteChannel<ByteBuffer>?
    /// Whether what the stream held at the (first) subscription has been read.
    var caughtUp = false
    var pending: [PendingExternal] = []
    /// Config imports: SUBSCRIBE requests that came before the catch-up.
    var parked: [() -> Void] = []
    let size: Int
    /// The user the mirror's messages are charged to.
    let uid: UInt32
    var removed = false
    /// Messages without comet's headers, skipped.
    var foreign: UInt64 = 0

    var permanent: Bool { localName != nil }

    init(key: NATSRelayKey, localName: String?, name: String, link: NATSLink, size: Int, uid: UInt32) {
        self.key = key
        self.localName = localName
        self.name = name
        self.link = link
        self.size = key.newest ? 1 : size
        self.uid = uid
    }
}
