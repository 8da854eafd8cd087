import CometChannels
import Foundation
import XCTest

final class PolicyTests: XCTestCase {
    let parser = PolicyParser(
        userID: { ["alice": 1000, "bob": 1001, "root": 0][$0] }, groupID: { ["adm": 4, "staff": 50][$0] })

    func parse(_ text: String) throws -> Policy {
        var policy = Policy()
        try parser.parse(text, file: "test.conf", into: &policy)
        return policy
    }

    let alice = Identity(uid: 1000, gid: 1000)
    let bob = Identity(uid: 1001, gid: 1001, groups: [50])
    let root = Identity(uid: 0, gid: 0)

    func testEmptyPolicyIsFirstComeAndOpen() throws {
        let policy = try parse("# nothing\n\n")
        XCTAssertTrue(policy.mayCreate("anything", alice))
        XCTAssertTrue(policy.maySubscribe("anything", bob))
        XCTAssertFalse(policy.mayAddressSession(ofUser: 1001, alice))
        XCTAssertTrue(policy.mayAddressSession(ofUser: 1000, alice))
        XCTAssertTrue(policy.mayAddressSession(ofUser: 1000, root))
        XCTAssertFalse(policy.grantsRelay("unix:/run/x.sock", alice))
    }

    func testMostSpecificPatternWins() throws {
        let policy = try parse("""
            create sys.*          user:root
            create sys.clock.*    user:alice     # alice runs the clock service
            create sys.clock.tz   none
            subscribe secret.*    group:staff
            """)
        XCTAssertFalse(policy.mayCreate("sys.disk", alice))
        XCTAssertTrue(policy.mayCreate("sys.disk", root))
        XCTAssertTrue(policy.mayCreate("sys.clock.ticks", alice))
        XCTAssertFalse(policy.mayCreate("sys.clock.ticks", bob))
        XCTAssertFalse(policy.mayCreate("sys.clock.tz", alice))
        XCTAssertTrue(policy.mayCreate("sys.clock.tz", root), "root may always")
        XCTAssertTrue(policy.mayCreate("user.thing", bob))
        XCTAssertTrue(policy.maySubscribe("secret.a", bob), "bob is in staff")
        XCTAssertFalse(policy.maySubscribe("secret.a", alice))
        XCTAssertTrue(policy.namesGroups)
    }

    func testRulesForOnePatternAddUp() throws {
        let policy = try parse("create svc user:alice\ncreate svc user:bob\naddress-sessions user:alice,group:adm\n")
        XCTAssertTrue(policy.mayCreate("svc", alice))
        XCTAssertTrue(policy.mayCreate("svc", bob))
        XCTAssertTrue(policy.mayAddressSession(ofUser: 1001, alice))
        XCTAssertTrue(policy.mayAddressSession(ofUser: 1000, Identity(uid: 7, gid: 4)))
    }

    func testRelayRulesGrantAddresses() throws {
        let policy = try parse("relay unix:/run/upstream/* user:bob\n")
        XCTAssertTrue(policy.grantsRelay("unix:/run/upstream/comet.sock", bob))
        XCTAssertFalse(policy.grantsRelay("unix:/run/upstream/comet.sock", alice))
        XCTAssertFalse(policy.grantsRelay("unix:/run/other.sock", bob))
        let nats = try parse("relay nats://hub:4222/comet.news.* user:alice\n")
        XCTAssertTrue(nats.grantsRelay("nats://hub:4222/comet.news.uk", alice))
        XCTAssertFalse(nats.grantsRelay("nats://hub:4222/comet.alerts", alice))
        XCTAssertFalse(nats.grantsRelay("nats://hub:4222/comet.news.uk", bob))
    }

    func testErrorsNameTheLine() {
        let cases: [(String, Int, String)] = [
            ("create a user:alice\nown b user:alice\n", 2, "unknown rule 'own'"),
            ("create a\n", 1, "takes a pattern"),
            ("create a user:mallory\n", 1, "unknown user 'mallory'"),
            ("subscribe a group:nogroup\n", 1, "unknown group 'nogroup'"),
            ("create a*b user:alice\n", 1, "'*' may only end a pattern"),
            ("create -bad user:alice\n", 1, "-bad"),
            ("relay /run/x user:alice\n", 1, "relay patterns are addresses"),
            ("create a alice\n", 1, "is not a principal"),
            ("create user.* %u\n", 1, "has none"),
            ("create user.%u%u.* %u\n", 1, "at most one %u"),
            ("create user%u.* %u\n", 1, "whole segment"),
            ("create user.%ux.* %u\n", 1, "whole segment"),
            ("create user.%s.* user:alice\n", 1, "'%' is not allowed"),
            ("relay unix:/run/%u.sock %u\n", 1, "no %u segment"),
            ("address-sessions %u\n", 1, "needs a pattern"),
        ]
        for (text, line, reason) in cases {
            XCTAssertThrowsError(try parse(text), text) { error in
                let e = error as! PolicyError
                XCTAssertEqual(e.line, line, text)
                XCTAssertTrue(e.reason.contains(reason), "\(e)")
                XCTAssertTrue(e.description.hasPrefix("test.conf:\(line): "), "\(e)")
            }
        }
    }

    func testNumericPrincipals() throws {
        let policy = try parse("create n user:4242\nsubscribe n group:4242\n")
        XCTAssertTrue(policy.mayCreate("n", Identity(uid: 4242, gid: 1)))
        XCTAssertTrue(policy.maySubscribe("n", Identity(uid: 5, gid: 4242)))
        XCTAssertFalse(policy.maySubscribe("n", Identity(uid: 5, gid: 5)))
    }

    /// `user.%u.*` and `%u`: a name's segment names the user who may; a uid in decimal too.
    func testUserSegmentNamesTheUser() throws {
        let policy = try parse("""
            create user.*          none
            create user.%u.*       %u
            create user.alice.shared.*  user:bob
            subscribe user.%u.private.* %u
            """)
        let users: Policy.UserLookup = { ["alice": 1000, "bob": 1001][$0] }
        XCTAssertTrue(policy.mayCreate("user.alice.alerts", alice, users: users))
        XCTAssertFalse(policy.mayCreate("user.alice.alerts", bob, users: users))
        XCTAssertTrue(policy.mayCreate("user.alice.alerts", root, users: users), "root may always")
        XCTAssertTrue(policy.mayCreate("user.1000.alerts", alice, users: users), "a uid in decimal names the user too")
        XCTAssertFalse(policy.mayCreate("user.1000.alerts", bob, users: users))
        XCTAssertFalse(policy.mayCreate("user.mallory.x", alice, users: users), "no such user: nobody but root")
        XCTAssertFalse(policy.mayCreate("user.alice", alice, users: users), "no segment after the user: user.* decides")
        XCTAssertFalse(policy.mayCreate("user..x", alice, users: users), "an empty segment names nobody")
        XCTAssertTrue(policy.mayCreate("user.alice.shared.x", bob, users: users), "a literal prefix is more specific")
        XCTAssertFalse(policy.mayCreate("user.alice.shared.x", alice, users: users))
        XCTAssertTrue(policy.mayCreate("users.x", bob, users: users), "outside the namespace: first come")
        XCTAssertEqual(policy.creation("user.alice.x", bob, users: users).pattern?.description, "user.%u.*")
        XCTAssertNil(policy.creation("other", bob, users: users).pattern)
        XCTAssertFalse(policy.maySubscribe("user.alice.private.diary", bob, users: users))
        XCTAssertTrue(policy.maySubscribe("user.alice.private.diary", alice, users: users))
        XCTAssertTrue(policy.maySubscribe("user.alice.alerts", bob, users: users))
        XCTAssertFalse(policy.mayCreate("user.alice.alerts", alice), "without a lookup only decimal uids name users")
        XCTAssertTrue(policy.namesUsersInNames)
    }

    /// `system`: root, uids up to SYS_UID_MAX, systemd's dynamic users; not nobody, not people.
    func testSystemPrincipal() throws {
        let parser = PolicyParser(userID: { _ in nil }, groupID: { _ in nil }, systemUIDMax: 499)
        var policy = Policy()
        try parser.parse("create sys.* system\n", file: "t", into: &policy)
        XCTAssertTrue(policy.mayCreate("sys.clock", Identity(uid: 1, gid: 1)))
        XCTAssertTrue(policy.mayCreate("sys.clock", Identity(uid: 499, gid: 1)))
        XCTAssertFalse(policy.mayCreate("sys.clock", Identity(uid: 500, gid: 1)))
        XCTAssertTrue(policy.mayCreate("sys.clock", Identity(uid: 61184, gid: 61184)), "DynamicUser=")
        XCTAssertFalse(policy.mayCreate("sys.clock", Identity(uid: 65534, gid: 65534)), "nobody")
        XCTAssertTrue(policy.mayCreate("sys.clock", root))
        XCTAssertTrue(policy.mayCreate("system.clock", Identity(uid: 1000, gid: 1)), "sys.* is not system*")
    }

    /// The policy the package ships (systemd/policy.conf) reads, and says what docs/POLICY.md says.
    func testShippedDefaultPolicy() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../systemd/policy.conf")
        let text = try String(contentsOf: file, encoding: .utf8)
        var policy = Policy()
        try PolicyParser(userID: { ["alice": 1000, "bob": 1001, "daemon": 1][$0] }, groupID: { _ in nil }).parse(text, file: "policy.conf", into: &policy)
        let users: Policy.UserLookup = { ["alice": 1000, "bob": 1001, "daemon": 1][$0] }
        let daemon = Identity(uid: 1, gid: 1)
        XCTAssertTrue(policy.mayCreate("sys.clock", daemon, users: users))
        XCTAssertFalse(policy.mayCreate("sys.clock", alice, users: users))
        XCTAssertTrue(policy.mayCreate("user.alice.alerts", alice, users: users))
        XCTAssertFalse(policy.mayCreate("user.alice.alerts", bob, users: users))
        XCTAssertFalse(policy.mayCreate("user.alice.alerts", daemon, users: users))
        XCTAssertFalse(policy.mayCreate("remote.news", alice, users: users), "import names are the bridge's")
        XCTAssertTrue(policy.mayCreate("svc.a.alerts", bob, users: users), "outside the namespaces: first come")
        XCTAssertTrue(policy.maySubscribe("user.alice.alerts", bob, users: users), "reading stays open")
        XCTAssertTrue(policy.maySubscribe("sys.clock", bob, users: users))
    }
}
