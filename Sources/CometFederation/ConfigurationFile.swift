import CometChannels

/// A mistake in a configuration file, with where it is.
public struct ConfigurationMistake: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int
    public let reason: String
    public var description: String { "\(file):\(line): \(reason)" }

    public init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }
}

/// comet-bridge's configuration file grammar (docs/FEDERATION.md): `[nats NAME]`, `[export NAME-OR-PREFIX*]`
/// and `[import LOCAL-NAME]` sections of `key = value` lines; `#` starts a comment.
extension FederationConfiguration {
    private enum Section {
        case none
        case nats(String)
        case export(Int)
        case importing(Int)
    }

    /// Parses the text of a configuration file; mistakes name `file` and the line.
    public static func parse(_ text: String, file: String) throws(ConfigurationMistake) -> FederationConfiguration {
        var config = FederationConfiguration()
        var section = Section.none
        var sectionLine: [String: Int] = [:]
        var importServers: [(Int, Int)] = []  // (import index, line) whose server is to be defaulted
        var exportServers: [(Int, Int)] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            let content = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = content.trimmingSpaces
            if trimmed.isEmpty { continue }
            func fail(_ reason: String) -> ConfigurationMistake { ConfigurationMistake(file: file, line: line, reason: reason) }
            if trimmed.hasPrefix("[") {
                guard trimmed.hasSuffix("]") else { throw fail("a section header ends with ']'") }
                let words = trimmed.dropFirst().dropLast().split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                guard words.count == 2 else { throw fail("a section is [nats NAME], [export NAME-OR-PREFIX*] or [import LOCAL-NAME]") }
                let (kind, name) = (words[0], words[1])
                switch kind {
                case "nats":
                    guard config.servers[name] == nil else { throw fail("server '\(name)' is already defined at line \(sectionLine[name] ?? 0)") }
                    config.servers[name] = NATSServer(url: "")
                    sectionLine[name] = line
                    section = .nats(name)
                case "export":
                    let stem = name.hasSuffix("*") ? String(name.dropLast()) : name
                    guard name == "*" || (try? ChannelName.validate(stem)) != nil || (name.hasSuffix("*") && !stem.isEmpty) else {
                        throw fail("'\(name)' is neither a channel name nor a prefix ending with '*'")
                    }
                    config.exports.append(ExportRule(pattern: name, server: ""))
                    exportServers.append((config.exports.count - 1, line))
                    section = .export(config.exports.count - 1)
                case "import":
                    guard (try? ChannelName.validate(name)) != nil else { throw fail("'\(name)' is not a channel name") }
                    guard !config.imports.contains(where: { $0.localName == name }) else { throw fail("'\(name)' is already imported") }
                    config.imports.append(ImportRule(localName: name, server: "", subject: ""))
                    importServers.append((config.imports.count - 1, line))
                    section = .importing(config.imports.count - 1)
                default:
                    throw fail("unknown section '\(kind)' (nats, export, import)")
                }
                continue
            }
            guard let equals = trimmed.firstIndex(of: "=") else { throw fail("expected 'key = value'") }
            let key = String(trimmed[..<equals]).trimmingSpaces
            let value = String(trimmed[trimmed.index(after: equals)...]).trimmingSpaces
            guard !value.isEmpty else { throw fail("'\(key)' has no value") }
            func number(_ range: ClosedRange<Int>) throws(ConfigurationMistake) -> Int {
                guard let n = Int(value), range.contains(n) else { throw fail("'\(key)' must be a whole number in \(range.lowerBound)...\(range.upperBound)") }
                return n
            }
            func seconds() throws(ConfigurationMistake) -> Int64 {
                guard let s = Double(value), s > 0, s <= 3600 else { throw fail("'\(key)' must be seconds, more than 0") }
                return Int64(s * 1000)
            }
            func secret() throws(ConfigurationMistake) -> String {
                guard let text = Self.readSmallFile(value) else { throw fail("cannot read \(value)") }
                let secret = text.trimmingSpaces
                guard !secret.isEmpty, !secret.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
                    throw fail("\(value) holds no secret, or one with control characters")
                }
                return secret
            }
            switch section {
            case .none:
                throw fail("'\(key)' outside a section")
            case .nats(let name):
                var server = config.servers[name]!
                switch key {
                case "url", "urls":
                    let urls = value.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map(String.init)
                    for url in urls {
                        guard url.hasPrefix("nats://") || url.hasPrefix("tls://"), NATSAddress(url)?.subject == nil else {
                            throw fail("url is a list of nats://HOST:PORT or tls://HOST:PORT, separated by commas (credentials go in their own keys), not '\(url)'")
                        }
                    }
                    guard !urls.isEmpty, urls.count <= 64 else { throw fail("url names 1 to 64 servers") }
                    server.urls = urls
                case "user": server.user = value
                case "password": server.password = value
                case "password-file": server.password = try secret()
                case "token": server.token = value
                case "token-file": server.token = try secret()
                case "creds": server.credentialsFile = value
                case "tls-ca": server.tlsCA = value
                case "tls-cert": server.tlsCertificate = value
                case "tls-key": server.tlsKey = value
                case "timeout": server.timeoutMilliseconds = try seconds()
                case "reconnect-wait": server.reconnectWaitMilliseconds = try seconds()
                default: throw fail("unknown key '\(key)' in [nats \(name)]")
                }
                config.servers[name] = server
            case .export(let i):
                switch key {
                case "server": config.exports[i].server = value
                case "subject-prefix":
                    guard NATSMapping.isValidSubject(value) else { throw fail("'\(value)' is not a NATS subject") }
                    config.exports[i].subjectPrefix = value
                case "stream-prefix":
                    guard NATSMapping.isValidStreamPrefix(value), value.utf8.count <= 64 else {
                        throw fail("stream-prefix holds letters, digits, '-' and '_' only (at most 64)")
                    }
                    config.exports[i].streamPrefix = value
                case "storage":
                    guard let storage = StreamStorage(rawValue: value) else { throw fail("storage is memory or file") }
                    config.exports[i].storage = storage
                case "max-in-flight": config.exports[i].maxInFlight = try number(1...1_000_000)
                case "replicas": config.exports[i].replicas = try number(1...5)
                default: throw fail("unknown key '\(key)' in an export")
                }
            case .importing(let i):
                switch key {
                case "server": config.imports[i].server = value
                case "subject":
                    guard NATSMapping.isValidSubject(value) else { throw fail("'\(value)' is not a NATS subject (no wildcards)") }
                    config.imports[i].subject = value
                case "size": config.imports[i].size = try number(1...1_000_000)
                case "newest":
                    guard value == "yes" || value == "no" else { throw fail("newest is yes or no") }
                    config.imports[i].newest = value == "yes"
                case "stall-after": config.imports[i].stallAfterMilliseconds = try seconds()
                default: throw fail("unknown key '\(key)' in an import")
                }
            }
        }
        for (name, server) in config.servers where server.url.isEmpty {
            throw ConfigurationMistake(file: file, line: sectionLine[name] ?? 0, reason: "[nats \(name)] has no url")
        }
        func resolve(_ given: String, line: Int) throws(ConfigurationMistake) -> String {
            if given.isEmpty {
                guard config.servers.count == 1 else {
                    throw ConfigurationMistake(file: file, line: line, reason: "name the server (server = NAME): \(config.servers.count) are defined")
                }
                return config.servers.keys.first!
            }
            guard config.servers[given] != nil else { throw ConfigurationMistake(file: file, line: line, reason: "no [nats \(given)] section") }
            return given
        }
        for (i, line) in exportServers { config.exports[i].server = try resolve(config.exports[i].server, line: line) }
        for (i, line) in importServers {
            config.imports[i].server = try resolve(config.imports[i].server, line: line)
            if config.imports[i].subject.isEmpty {
                guard let subject = NATSMapping.subject(prefix: "comet", name: config.imports[i].localName) else {
                    throw ConfigurationMistake(file: file, line: line, reason: "give the subject (subject = ...)")
                }
                config.imports[i].subject = subject
            }
        }
        return config
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension FederationConfiguration {
    /// The whole text of a configuration file, or nil when it cannot be read (errno says why).
    public static func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n > 0 { bytes.append(contentsOf: chunk[..<n]) }
            if n < chunk.count { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The first 64 KiB of a small file (a password or token file), or nil.
    static func readSmallFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes = [UInt8](repeating: 0, count: 65536)
        let n = fread(&bytes, 1, bytes.count, file)
        return String(decoding: bytes[..<n], as: UTF8.self)
    }
}

extension String {
    var trimmingSpaces: String {
        let scalars = unicodeScalars
        // A secret file's trailing newline would end the NATS CONNECT line early.
        let blank: (Unicode.Scalar) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = scalars.firstIndex(where: { !blank($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !blank($0) })!
        return String(scalars[first...last])
    }
}
