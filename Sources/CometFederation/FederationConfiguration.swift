/// What comet-bridge exports to and imports from NATS JetStream (`comet-bridge --config`,
/// docs/FEDERATION.md).
public struct FederationConfiguration: Sendable, Equatable {
    /// NATS servers by the name the configuration gives them.
    public var servers: [String: NATSServer] = [:]
    /// Local site channels mirrored to a server, first matching rule wins.
    public var exports: [ExportRule] = []
    /// Local names that read a JetStream subject (always on, from the daemon's start).
    public var imports: [ImportRule] = []

    public init() {}

    /// The export rule for channel `name`, if any.
    public func export(for name: String) -> ExportRule? {
        exports.first { $0.matches(name) }
    }

    /// The declared server with this URL (its credentials are used for imports named by address).
    public func server(url: String) -> NATSServer? {
        servers.values.first { $0.url == url }
    }
}

/// One NATS server and how to log in to it.
public struct NATSServer: Sendable, Equatable {
    /// `nats://HOST:PORT` (or `tls://HOST:PORT`): the first of `urls`, naming the server in logs.
    public var url: String { urls.first ?? "" }
    /// Every server of the cluster the configuration names: a connection is made through any of
    /// them (and through those the cluster announces once connected).
    public var urls: [String]
    public var user: String?
    public var password: String?
    public var token: String?
    /// A NATS `.creds` file (user JWT and seed).
    public var credentialsFile: String?
    /// PEM file of the CAs to trust; the connection then uses TLS.
    public var tlsCA: String?
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Connect and request timeout, milliseconds.
    public var timeoutMilliseconds: Int64 = 2000
    /// Delay between reconnection attempts, milliseconds.
    public var reconnectWaitMilliseconds: Int64 = 1000

    public init(url: String) { self.urls = url.isEmpty ? [] : [url] }

    public init(urls: [String]) { self.urls = urls }
}

/// How JetStream stores an exported channel's stream.
public enum StreamStorage: String, Sendable, Equatable {
    case memory
    case file
}

/// Which local site channels are mirrored to a NATS server, and where.
public struct ExportRule: Sendable, Equatable {
    /// A channel name, or a prefix ending with `*`.
    public var pattern: String
    /// Name of the server in `FederationConfiguration.servers`.
    public var server: String
    /// Channel `NAME` goes to subject `subjectPrefix.NAME`.
    public var subjectPrefix = "comet"
    /// Channel `NAME` goes to stream `streamPrefix` + the name's stream encoding.
    public var streamPrefix = "COMET_"
    public var storage = StreamStorage.file
    /// Publishes awaiting JetStream's acknowledgement, at most.
    public var maxInFlight = 1024
    /// Servers of the cluster holding a copy of each stream (JetStream's stream replicas): 3
    /// survives the loss of one node, at the cost of every message being written three times.
    public var replicas = 1

    public init(pattern: String, server: String) {
        self.pattern = pattern
        self.server = server
    }

    public func matches(_ name: String) -> Bool {
        if pattern.hasSuffix("*") { return name.hasPrefix(pattern.dropLast()) }
        return name == pattern
    }
}

/// A local name whose readers read a JetStream subject.
public struct ImportRule: Sendable, Equatable {
    /// The name local readers subscribe to.
    public var localName: String
    /// Name of the server in `FederationConfiguration.servers`.
    public var server: String
    /// The subject an exporting cometd publishes the channel to.
    public var subject: String
    /// Ring of the local mirror (messages kept for local readers).
    public var size = 1000
    /// A latest-value mirror (only the newest message kept).
    public var newest = false
    /// How long the subject may be unreachable before local readers are told the import is
    /// stalled (milliseconds).
    public var stallAfterMilliseconds: Int64 = 10_000

    public init(localName: String, server: String, subject: String) {
        self.localName = localName
        self.server = server
        self.subject = subject
    }
}
