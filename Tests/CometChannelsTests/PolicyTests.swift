import CometChannels
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
}
