import Comet
import CometWire
import Foundation
import XCTest

/// The shipped default policy (systemd/policy.conf, docs/POLICY.md) against other local users,
/// run through setpriv: `nobody` (65534, a person as far as the policy goes) and `daemon` (1, a
/// system user). Names in the system and user namespaces belong to someone; everything else is
/// first come as before; readers are protected without saying `--owner`.
final class NamespaceTests: XCTestCase {
    static let nobody: UInt32 = 65534
    static let daemonUser: UInt32 = 1

    static var shippedPolicy: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../systemd/policy.conf").standardized.path
    }

    var daemon: Daemon!
    var comet = ""
    var background: [Process] = []

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to act as other uids") }
        for (name, uid) in [("nobody", Self.nobody), ("daemon", Self.daemonUser)] {
            guard OwnerPin.systemUser(named: name) == uid else { throw XCTSkip("no user \(name) with uid \(uid) here") }
        }
    }

    override func tearDown() {
        for process in background where process.isRunning { process.terminate() }
        daemon?.stop()
    }

    /// A daemon with `policy` (a path), and a copy of `comet` other users can run.
    func start(policy: String) throws {
        daemon = try Daemon(arguments: ["--policy", policy])
        comet = daemon.directory.appendingPathComponent("comet").path
        try FileManager.default.copyItem(atPath: Daemon.executable("comet").path, toPath: comet)
        chmod(daemon.directory.path, 0o755)
    }

    /// `comet ARGS` as `uid`, to its end.
    func comet(as uid: UInt32, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runTool(
            "/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", comet] + arguments + ["--socket", daemon.socketPath],
            absolute: true)
    }

    /// A producer as `uid` that keeps channel `name` open with one message.
    func produce(as uid: UInt32, _ name: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", comet, "push", name, "from \(uid)", "--linger", "60",
                             "--socket", daemon.socketPath]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        background.append(process)
        for _ in 0..<250 {
            if try runTool("comet", ["channels", "--socket", daemon.socketPath]).stdout.split(separator: "\n").contains(where: { $0.hasPrefix(name + " ") }) {
                return
            }
            usleep(20_000)
        }
        XCTFail("\(name) never appeared")
    }

    /// `body` must end with OWNER_MISMATCH; `otherwise` says what happened if it does not.
    func assertOwnerMismatch(_ otherwise: String, line: UInt = #line, _ body: () async throws -> Void) async {
        do {
            try await body()
            XCTFail(otherwise, line: line)
        } catch let error as CometError {
            XCTAssertEqual(error.code, .ownerMismatch, line: line)
        } catch {
            XCTFail("\(error)", line: line)
        }
    }

    // MARK: Creating

    func testTheDefaultGivesNamesAnOwner() throws {
        try start(policy: Self.shippedPolicy)
        // A person may not create system names, other users' names, or import names.
        for name in ["sys.clock", "user.daemon.alerts", "user.0.alerts", "user.alerts", "remote.news"] {
            let refused = try comet(as: Self.nobody, ["push", name, "spoof"])
            XCTAssertEqual(refused.status, 1, "\(name): \(refused.stderr)")
            XCTAssertTrue(refused.stderr.contains("PERMISSION_DENIED"), "\(name): \(refused.stderr)")
        }
        XCTAssertTrue(daemon.log.contains("refused by policy: create"), daemon.log)
        // Its own namespace, by name or uid, and every other name: as before.
        for name in ["user.nobody.alerts", "user.65534.alerts", "svc.a.alerts"] {
            let made = try comet(as: Self.nobody, ["push", name, "mine"])
            XCTAssertEqual(made.status, 0, "\(name): \(made.stderr)")
        }
        // A system user may create system names, not a person's.
        XCTAssertEqual(try comet(as: Self.daemonUser, ["push", "sys.clock", "tick"]).status, 0)
        let intruder = try comet(as: Self.daemonUser, ["push", "user.nobody.alerts", "spoof"])
        XCTAssertTrue(intruder.stderr.contains("PERMISSION_DENIED"), intruder.stderr)
        // First come elsewhere: the second creator of a live name gets CHANNEL_EXISTS, as before.
        try produce(as: Self.nobody, "svc.b.alerts")
        XCTAssertTrue(try comet(as: Self.daemonUser, ["push", "svc.b.alerts", "x"]).stderr.contains("CHANNEL_EXISTS"))
        // `comet channels` says which rule let each channel exist.
        try produce(as: Self.daemonUser, "sys.disk")
        try produce(as: Self.nobody, "user.nobody.mail")
        let table = try runTool("comet", ["channels", "--socket", daemon.socketPath]).stdout
        let rows = Dictionary(table.split(separator: "\n").map { line in (String(line.split(separator: " ")[0]), String(line)) }, uniquingKeysWith: { a, _ in a })
        XCTAssertTrue(rows["sys.disk"]?.hasSuffix("sys.*") ?? false, table)
        XCTAssertTrue(rows["user.nobody.mail"]?.hasSuffix("user.%u.*") ?? false, table)
        XCTAssertTrue(rows["svc.b.alerts"]?.hasSuffix(" -") ?? false, table)
        let json = try runTool("comet", ["channels", "--json", "--socket", daemon.socketPath]).stdout
        let entries = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        let mail = try XCTUnwrap(entries.first { $0["name"] as? String == "user.nobody.mail" })
        XCTAssertEqual(mail["rule"] as? String, "user.%u.*")
        XCTAssertEqual(mail["rule_allows_owner"] as? Bool, true)
        XCTAssertTrue(try XCTUnwrap(entries.first { $0["name"] as? String == "svc.b.alerts" })["rule"] is NSNull)
    }

    // MARK: Reading

    /// A name taken before the default applied (the migration case): readers that say nothing
    /// are refused it; `comet channels` shows why; pinning its creator still reads it.
    func testReadersAreProtectedFromNamesTakenBeforeThePolicy() async throws {
        let path = try policyFile("# nothing yet\n")
        try start(policy: path)
        try produce(as: Self.nobody, "sys.clock")
        try produce(as: Self.nobody, "svc.a.alerts")
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: Self.shippedPolicy, toPath: path)
        kill(daemon.process.processIdentifier, SIGHUP)
        for _ in 0..<250 where !daemon.log.contains("policy reloaded") { usleep(20_000) }

        let refused = try comet(as: Self.daemonUser, ["listen", "sys.clock", "--from", "oldest", "--count", "1"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("OWNER_MISMATCH"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("create sys.*"), refused.stderr)
        let table = try runTool("comet", ["channels", "--socket", daemon.socketPath]).stdout
        XCTAssertTrue(table.contains("sys.* (owner not allowed"), table)
        let pinned = try comet(as: Self.daemonUser, ["listen", "sys.clock", "--from", "oldest", "--count", "1", "--owner", "nobody"])
        XCTAssertEqual(pinned.stdout, "from 65534\n", pinned.stderr)
        // Names outside the namespaces read as before.
        let plain = try comet(as: Self.daemonUser, ["listen", "svc.a.alerts", "--from", "oldest", "--count", "1"])
        XCTAssertEqual(plain.stdout, "from 65534\n", plain.stderr)
        // The Swift client sees the same refusal.
        let client = try await CometClient.connect(to: daemon.socketPath)
        await assertOwnerMismatch("sys.clock by nobody was read without a pin") {
            _ = try await client.subscribe("sys.clock", owner: .anyone)
        }
        await client.close()
    }

    /// Without any policy on the daemon, the clients themselves read `user.NAME.…` only from NAME.
    func testClientsPinTheOwnerAUserNameImplies() async throws {
        try start(policy: try policyFile("# first come, first served everywhere\n"))
        try produce(as: Self.nobody, "user.daemon.alerts")
        try produce(as: Self.daemonUser, "user.daemon.mail")
        let spoofed = try comet(as: 0, ["listen", "user.daemon.alerts", "--from", "oldest", "--count", "1"])
        XCTAssertEqual(spoofed.status, 1, spoofed.stderr)
        XCTAssertTrue(spoofed.stderr.contains("OWNER_MISMATCH"), spoofed.stderr)
        let opted = try comet(as: 0, ["listen", "user.daemon.alerts", "--from", "oldest", "--count", "1", "--owner", "any"])
        XCTAssertEqual(opted.stdout, "from 65534\n", opted.stderr)
        let genuine = try comet(as: 0, ["listen", "user.daemon.mail", "--from", "oldest", "--count", "1"])
        XCTAssertEqual(genuine.stdout, "from 1\n", genuine.stderr)

        let client = try await CometClient.connect(to: daemon.socketPath)
        await assertOwnerMismatch("user.daemon.alerts by nobody was read") {
            _ = try await client.subscribe("user.daemon.alerts", from: .oldest)
        }
        let anyone = try await client.subscribe("user.daemon.alerts", from: .oldest, owner: .anyone)
        XCTAssertEqual(anyone.info.owner.uid, Self.nobody)
        // A waiting reader of a user name ends before any message when another user creates it.
        let waiting = try await client.subscribe("user.daemon.later", wait: true)
        try produce(as: Self.nobody, "user.daemon.later")
        await assertOwnerMismatch("the waiting subscription ended without an error") {
            for try await message in waiting { XCTFail("read \(message) from a spoofer") }
        }
        await client.close()
    }
}
