import NIOCore

/// Everything a running cometd holds, as plain values: what one process hands to the next on a
/// live upgrade (`SIGHUP`) or a planned restart through systemd's file-descriptor store.
///
/// Descriptors (listening sockets, connections) are named by number: the receiving process has
/// them at the same numbers (inherited across `execve`) or maps them from `LISTEN_FDS`.
/// The byte layout is `ImageCodec`'s, documented in docs/RESTARTS.md.
public struct DaemonImage: Equatable, Sendable {
    /// The software version of the process that wrote the image (for logs).
    public var softwareVersion: String
    /// The daemon's random instance id (HELLO), kept so that relays still recognise it.
    public var instance: UInt64
    /// Next handles to give out, so that none is ever reused.
    public var nextConnectionID: UInt64
    public var nextChannelID: UInt64
    public var nextPrivateID: UInt64
    /// Listening sockets, by descriptor.
    public var listeners: [Int32]
    public var channels: [SiteChannelImage]
    public var privateChannels: [PrivateChannelImage]
    public var sessions: [SessionImage]
    public var connections: [ConnectionImage]
    /// Names of the storage files the writer had in the file-descriptor store: the reader
    /// writes its own and asks the store to forget these.
    public var storedNames: [String]

    public init(
        softwareVersion: String, instance: UInt64, nextConnectionID: UInt64, nextChannelID: UInt64, nextPrivateID: UInt64,
        listeners: [Int32] = [], channels: [SiteChannelImage] = [], privateChannels: [PrivateChannelImage] = [],
        sessions: [SessionImage] = [], connections: [ConnectionImage] = [], storedNames: [String] = []
    ) {
        self.storedNames = storedNames
        self.softwareVersion = softwareVersion
        self.instance = instance
        self.nextConnectionID = nextConnectionID
        self.nextChannelID = nextChannelID
        self.nextPrivateID = nextPrivateID
        self.listeners = listeners
        self.channels = channels
        self.privateChannels = privateChannels
        self.sessions = sessions
        self.connections = connections
    }
}

/// A peer's credentials (SO_PEERCRED).
public struct PeerImage: Equatable, Sendable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}

/// A site channel: its identity, numbering and the messages its ring holds.
public struct SiteChannelImage: Equatable, Sendable {
    public var id: UInt64
    public var name: String
    public var epoch: UInt64
    /// The owning connection (or relay) id.
    public var owner: UInt64
    public var newestOnly: Bool
    public var size: Int
    public var creator: PeerImage
    /// Closed channels are kept while readers drain them; `registered` is false for those
    /// (their name is free).
    public var closed: Bool
    public var registered: Bool
    public var replacedByEpoch: UInt64?
    /// Sequence number of `messages.first` (`lastSequence + 1` when empty).
    public var firstSequence: UInt64
    public var messages: [ByteBuffer]
    public var pushedCount: UInt64
    public var pushedBytes: UInt64
    public var deliveredCount: UInt64
    public var fullCount: UInt64

    /// The producer token (ADOPT).
    public var tokenHigh: UInt64 = 0
    public var tokenLow: UInt64 = 0
    /// The sequence number producer number 1 got (image format 2; 0: not numbered).
    public var numberedFrom: UInt64 = 0

    public init(
        id: UInt64, name: String, epoch: UInt64, owner: UInt64, newestOnly: Bool, size: Int, creator: PeerImage,
        closed: Bool, registered: Bool, replacedByEpoch: UInt64?, firstSequence: UInt64, messages: [ByteBuffer],
        pushedCount: UInt64 = 0, pushedBytes: UInt64 = 0, deliveredCount: UInt64 = 0, fullCount: UInt64 = 0,
        tokenHigh: UInt64 = 0, tokenLow: UInt64 = 0, numberedFrom: UInt64 = 0
    ) {
        self.numberedFrom = numberedFrom
        self.tokenHigh = tokenHigh
        self.tokenLow = tokenLow
        self.id = id
        self.name = name
        self.epoch = epoch
        self.owner = owner
        self.newestOnly = newestOnly
        self.size = size
        self.creator = creator
        self.closed = closed
        self.registered = registered
        self.replacedByEpoch = replacedByEpoch
        self.firstSequence = firstSequence
        self.messages = messages
        self.pushedCount = pushedCount
        self.pushedBytes = pushedBytes
        self.deliveredCount = deliveredCount
        self.fullCount = fullCount
    }

    public var lastSequence: UInt64 { firstSequence + UInt64(messages.count) - 1 }
}

/// A client-process channel with its unacknowledged messages and its pull state.
public struct PrivateChannelImage: Equatable, Sendable {
    public var id: UInt64
    public var name: String
    public var epoch: UInt64
    public var session: UInt64
    public var owner: UInt64
    public var size: Int
    public var unlimited: Bool
    public var creator: PeerImage
    public var acknowledged: UInt64
    public var closed: Bool
    public var full: Bool
    public var reader: UInt64?
    public var outstandingPull: UInt64?
    public var nextPull: UInt64
    public var firstSequence: UInt64
    public var messages: [ByteBuffer]

    /// The producer token (ADOPT).
    public var tokenHigh: UInt64 = 0
    public var tokenLow: UInt64 = 0
    /// The sequence number producer number 1 got (image format 2; 0: not numbered).
    public var numberedFrom: UInt64 = 0

    public init(
        id: UInt64, name: String, epoch: UInt64, session: UInt64, owner: UInt64, size: Int, unlimited: Bool,
        creator: PeerImage, acknowledged: UInt64, closed: Bool, full: Bool, reader: UInt64?, outstandingPull: UInt64?,
        nextPull: UInt64, firstSequence: UInt64, messages: [ByteBuffer], tokenHigh: UInt64 = 0, tokenLow: UInt64 = 0,
        numberedFrom: UInt64 = 0
    ) {
        self.numberedFrom = numberedFrom
        self.tokenHigh = tokenHigh
        self.tokenLow = tokenLow
        self.id = id
        self.name = name
        self.epoch = epoch
        self.session = session
        self.owner = owner
        self.size = size
        self.unlimited = unlimited
        self.creator = creator
        self.acknowledged = acknowledged
        self.closed = closed
        self.full = full
        self.reader = reader
        self.outstandingPull = outstandingPull
        self.nextPull = nextPull
        self.firstSequence = firstSequence
        self.messages = messages
    }
}

/// A session: its secret, its user, its connections and private channels, and its clocks
/// (CLOCK_MONOTONIC nanoseconds, which go on across `execve` and restarts within one boot).
public struct SessionImage: Equatable, Sendable {
    public var id: UInt64
    public var tokenHigh: UInt64
    public var tokenLow: UInt64
    public var uid: UInt32
    public var connections: [UInt64]
    public var detachedAt: UInt64?
    public var lastActivity: UInt64
    /// Private channels by name: (name, handle).
    public var channels: [PrivateChannelEntry]
    /// Whether it is charged to its user's session quota.
    public var charged: Bool

    public init(
        id: UInt64, tokenHigh: UInt64, tokenLow: UInt64, uid: UInt32, connections: [UInt64], detachedAt: UInt64?,
        lastActivity: UInt64, channels: [PrivateChannelEntry], charged: Bool
    ) {
        self.id = id
        self.tokenHigh = tokenHigh
        self.tokenLow = tokenLow
        self.uid = uid
        self.connections = connections
        self.detachedAt = detachedAt
        self.lastActivity = lastActivity
        self.channels = channels
        self.charged = charged
    }
}

public struct PrivateChannelEntry: Equatable, Sendable {
    public var name: String
    public var handle: UInt64

    public init(name: String, handle: UInt64) {
        self.name = name
        self.handle = handle
    }
}

/// One client connection: its socket, its place in the protocol, its subscriptions, and the
/// bytes in flight both ways (a partial request read, answers not yet written).
public struct ConnectionImage: Equatable, Sendable {
    public var id: UInt64
    /// The socket's descriptor in the process that wrote the image, and its SO_COOKIE (which
    /// finds it again among descriptors passed back by the service manager under other numbers).
    public var descriptor: Int32
    public var cookie: UInt64
    public var peer: PeerImage
    public var openedAt: UInt64
    public var lastRequest: UInt64
    public var handshaken: Bool
    /// Counted against its user's connection quota.
    public var counted: Bool
    /// The peer half-closed: answer what it asked, then close.
    public var inputClosed: Bool
    public var session: UInt64?
    public var ownedChannels: Int
    public var nextSubscriptionID: UInt32
    public var subscriptions: [SubscriptionImage]
    public var timeoutWaits: [TimeoutWaitImage]
    /// Bytes read and not yet handled (a partial frame, or requests held back).
    public var input: ByteBuffer
    /// Bytes owed to the peer, in order: what the old socket queue still held, then the outbox.
    public var output: ByteBuffer

    public init(
        id: UInt64, descriptor: Int32, cookie: UInt64 = 0, peer: PeerImage, openedAt: UInt64, lastRequest: UInt64, handshaken: Bool,
        counted: Bool, inputClosed: Bool, session: UInt64?, ownedChannels: Int, nextSubscriptionID: UInt32,
        subscriptions: [SubscriptionImage], timeoutWaits: [TimeoutWaitImage], input: ByteBuffer, output: ByteBuffer
    ) {
        self.id = id
        self.descriptor = descriptor
        self.cookie = cookie
        self.peer = peer
        self.openedAt = openedAt
        self.lastRequest = lastRequest
        self.handshaken = handshaken
        self.counted = counted
        self.inputClosed = inputClosed
        self.session = session
        self.ownedChannels = ownedChannels
        self.nextSubscriptionID = nextSubscriptionID
        self.subscriptions = subscriptions
        self.timeoutWaits = timeoutWaits
        self.input = input
        self.output = output
    }
}

/// A subscription: what it reads and its cursor.
public struct SubscriptionImage: Equatable, Sendable {
    public enum Source: UInt8, Sendable {
        /// Waiting for a site channel of its name to be created.
        case waiting = 0
        case site = 1
        case clientProcess = 2
    }

    public var id: UInt32
    public var name: String
    public var source: Source
    /// The channel's handle (0 while waiting).
    public var channel: UInt64
    public var cursor: UInt64
    public var pinnedOwner: UInt32?
    /// A mapped reader that asked (SUBSCRIBE RETURN) to be given its ring back: the next process
    /// serves it over the socket and gives it its ring again once it caught up (format 3).
    public var returnsToRing: Bool

    public init(
        id: UInt32, name: String, source: Source, channel: UInt64, cursor: UInt64, pinnedOwner: UInt32?, returnsToRing: Bool = false
    ) {
        self.id = id
        self.name = name
        self.source = source
        self.channel = channel
        self.cursor = cursor
        self.pinnedOwner = pinnedOwner
        self.returnsToRing = returnsToRing
    }
}

/// A pending WAIT_TIMEOUT.
public struct TimeoutWaitImage: Equatable, Sendable {
    public var session: UInt64
    public var requestID: UInt32
    /// Nanoseconds of inactivity asked for.
    public var timeout: UInt64

    public init(session: UInt64, requestID: UInt32, timeout: UInt64) {
        self.session = session
        self.requestID = requestID
        self.timeout = timeout
    }
}
