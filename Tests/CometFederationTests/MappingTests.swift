import CometFederation
import Foundation
import NIOCore
import XCTest

final class MappingTests: XCTestCase {
    func testSubjectsFollowNamesAndRefuseEmptyTokens() {
        XCTAssertEqual(NATSMapping.subject(prefix: "comet", name: "news"), "comet.news")
        XCTAssertEqual(NATSMapping.subject(prefix: "comet", name: "news.sport/uk@eu:1"), "comet.news.sport/uk@eu:1")
        XCTAssertNil(NATSMapping.subject(prefix: "comet", name: "a..b"))
        XCTAssertNil(NATSMapping.subject(prefix: "comet", name: "a."))
        XCTAssertFalse(NATSMapping.isValidSubject("comet.*"))
        XCTAssertFalse(NATSMapping.isValidSubject("comet.>"))
        XCTAssertFalse(NATSMapping.isValidSubject("co met"))
    }

    func testStreamNamesAreInjective() {
        XCTAssertEqual(NATSMapping.stream(prefix: "COMET_", name: "news"), "COMET_news")
        XCTAssertEqual(NATSMapping.stream(prefix: "COMET_", name: "a.b/c"), "COMET_a_2Eb_2Fc")
        XCTAssertNotEqual(NATSMapping.stream(prefix: "", name: "a_2E"), NATSMapping.stream(prefix: "", name: "a."))
        XCTAssertEqual(NATSMapping.stream(prefix: "", name: "a_"), "a_5F")
    }

    func testAddresses() {
        XCTAssertEqual(NATSAddress("nats://127.0.0.1:4222/comet.news")?.server, "nats://127.0.0.1:4222")
        XCTAssertEqual(NATSAddress("nats://127.0.0.1:4222/comet.news")?.subject, "comet.news")
        XCTAssertNil(NATSAddress("nats://host:4222")?.subject)
        XCTAssertEqual(NATSAddress("tls://nats.example:4443/x")?.server, "tls://nats.example:4443")
        XCTAssertNil(NATSAddress("nats://user:pw@host:4222/x"), "credentials never come from a client")
        XCTAssertNil(NATSAddress("nats://host/x"), "a port is required")
        XCTAssertNil(NATSAddress("nats://host:0/x"))
        XCTAssertNil(NATSAddress("nats://host:4222/comet.*"), "no wildcards")
        XCTAssertNil(NATSAddress("unix:/run/comet/comet.sock"))
    }

    func testConfigurationFile() throws {
        let text = """
            # two servers
            [nats hub]
            url = nats://10.0.0.1:4222
            user = comet
            password = secret
            timeout = 0.5
            [nats edge]
            url = tls://edge:4443
            token = t
            tls-ca = /etc/ssl/ca.pem

            [export news*]   # every channel whose name starts with news
            server = hub
            storage = memory
            max-in-flight = 64
            [export alerts]
            server = edge
            subject-prefix = site.a
            stream-prefix = A_
            [import remote.news]
            server = hub
            subject = comet.news
            size = 5000
            newest = yes
            """
        let config = try FederationConfiguration.parse(text, file: "t.conf")
        XCTAssertEqual(config.servers["hub"]?.user, "comet")
        XCTAssertEqual(config.servers["hub"]?.timeoutMilliseconds, 500)
        XCTAssertEqual(config.servers["edge"]?.tlsCA, "/etc/ssl/ca.pem")
        XCTAssertEqual(config.export(for: "news.uk")?.server, "hub")
        XCTAssertEqual(config.export(for: "news.uk")?.storage, .memory)
        XCTAssertEqual(config.export(for: "news.uk")?.maxInFlight, 64)
        XCTAssertEqual(config.export(for: "alerts")?.subjectPrefix, "site.a")
        XCTAssertNil(config.export(for: "alerts.x"), "a name without * is exact")
        XCTAssertEqual(config.imports.first?.size, 5000)
        XCTAssertEqual(config.imports.first?.newest, true)
    }

    func testConfigurationMistakesNameTheLine() {
        func mistake(_ text: String) -> String {
            do {
                _ = try FederationConfiguration.parse(text, file: "f")
                return "none"
            } catch {
                return error.description
            }
        }
        XCTAssertEqual(mistake("[nats a]\nurl = http://x:1\n"), "f:2: url is a list of nats://HOST:PORT or tls://HOST:PORT, separated by commas (credentials go in their own keys), not 'http://x:1'")
        XCTAssertEqual(mistake("[nats a]\n"), "f:1: [nats a] has no url")
        XCTAssertEqual(mistake("[export x]\n"), "f:1: name the server (server = NAME): 0 are defined")
        XCTAssertEqual(mistake("[nats a]\nurl = nats://h:1\n[import x]\nserver = b\n"), "f:3: no [nats b] section")
        XCTAssertEqual(mistake("[nats a]\nurl = nats://h:1\n[export x]\ncolour = red\n"), "f:4: unknown key 'colour' in an export")
        XCTAssertEqual(mistake("user = x\n"), "f:1: 'user' outside a section")
        XCTAssertEqual(mistake("[nats a]\nurl = nats://h:1\n[import -x]\n"), "f:3: '-x' is not a channel name")
        XCTAssertEqual(mistake("[nats a]\nurl = nats://h:1\n[import a.]\n"), "f:3: give the subject (subject = ...)")
    }
}

extension MappingTests {
    /// A secret file's trailing newline is not part of the secret (it would end NATS's CONNECT line).
    func testSecretFilesLoseTheirTrailingNewline() throws {
        let path = "/tmp/comet-secret-\(getpid())"
        _ = FileManager.default.createFile(atPath: path, contents: Data("s3cret\n".utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let config = try FederationConfiguration.parse("[nats a]\nurl = nats://h:1\npassword-file = \(path)\ntoken-file = \(path)\n", file: "f")
        XCTAssertEqual(config.servers["a"]?.password, "s3cret")
        XCTAssertEqual(config.servers["a"]?.token, "s3cret")
        _ = FileManager.default.createFile(atPath: path, contents: Data("\n".utf8))
        XCTAssertThrowsError(try FederationConfiguration.parse("[nats a]\nurl = nats://h:1\npassword-file = \(path)\n", file: "f"))
    }
}

/// Runs: several messages in one NATS message (docs/FEDERATION.md "Runs").
final class MessageRunTests: XCTestCase {
    func split(_ buffer: ByteBuffer, _ count: Int) -> [ByteBuffer]? {
        buffer.withUnsafeReadableBytes { MessageRun.split($0, count: count) }
    }

    func testARunSplitsBackIntoItsMessages() {
        let messages = [ByteBuffer(string: "a"), ByteBuffer(), ByteBuffer(string: String(repeating: "x", count: 70_000)), ByteBuffer(string: "end")]
        let run = MessageRun.encode(messages)
        XCTAssertEqual(run.readableBytes, 4 * 4 + 1 + 70_000 + 3)
        XCTAssertEqual(run.getInteger(at: 0, as: UInt32.self), 1, "big-endian lengths")
        XCTAssertEqual(split(run, 4), messages)
    }

    func testAnythingButAnExactRunIsRefused() {
        let run = MessageRun.encode([ByteBuffer(string: "ab"), ByteBuffer(string: "cd")])
        XCTAssertNil(split(run, 1), "bytes left over")
        XCTAssertNil(split(run, 3), "a message missing")
        XCTAssertNil(split(run, 0))
        var cut = run
        cut.moveWriterIndex(to: cut.writerIndex - 1)
        XCTAssertNil(split(cut, 2), "the last message cut short")
        var lying = run
        lying.setInteger(UInt32.max, at: 0)
        XCTAssertNil(split(lying, 2), "a length past the end")
        XCTAssertNil(split(ByteBuffer(), 5000), "a count the bytes cannot hold")
    }
}
