@testable import Comet
import CometWire
import NIOCore
import XCTest

final class PushLedgerTests: XCTestCase {
    /// What each push's completion was given, in the order completions ran.
    final class Outcomes {
        var all: [(Int, String)] = []
        func completion(_ push: Int) -> ClientHandler.Completion {
            { result in
                switch result {
                case .success: self.all.append((push, "ok"))
                case .failure(let error as CometError): self.all.append((push, error.code.name))
                case .failure(let error as ConnectionError): self.all.append((push, "\(error.kind)"))
                case .failure: self.all.append((push, "other"))
                }
            }
        }
        var summary: [String] { all.map { "\($0.0):\($0.1)" } }
    }

    private func messages(_ count: Int) -> ByteBuffer { ByteBuffer(repeating: 0, count: 5 * count) }

    func testNumbersFollowOnAndAnswersSettleInOrder() {
        let ledger = PushLedger()
        let outcomes = Outcomes()
        let a = ledger.record(count: 3, messages: messages(3), completion: outcomes.completion(1))
        let b = ledger.record(count: 2, messages: messages(2), completion: outcomes.completion(2))
        XCTAssertEqual([a.number, b.number, ledger.next], [1, 4, 6])
        a.sentAs = 10
        b.sentAs = 11
        for (completion, result) in ledger.answered(a, requestID: 10, .success(ByteBuffer()), retrying: false) { completion(result) }
        XCTAssertEqual(ledger.count, 1)
        // An answer under an id the push no longer has (it was sent again since) is ignored.
        XCTAssertTrue(ledger.answered(b, requestID: 7, .success(ByteBuffer()), retrying: false).isEmpty)
        for (completion, result) in ledger.answered(b, requestID: 11, .success(ByteBuffer()), retrying: false) { completion(result) }
        XCTAssertEqual(outcomes.summary, ["1:ok", "2:ok"])
        XCTAssertTrue(ledger.isEmpty)
    }

    func testALostConnectionKeepsPushesForTheResendInOrder() {
        let ledger = PushLedger()
        let outcomes = Outcomes()
        let a = ledger.record(count: 1, messages: messages(1), completion: outcomes.completion(1))
        let b = ledger.record(count: 1, messages: messages(1), completion: outcomes.completion(2))
        a.sentAs = 1
        b.sentAs = 2
        let lost = ConnectionError(.lost, "gone")
        XCTAssertTrue(ledger.answered(a, requestID: 1, .failure(lost), retrying: true).isEmpty)
        XCTAssertTrue(ledger.answered(b, requestID: 2, .failure(lost), retrying: true).isEmpty)
        let again = ledger.unanswered()
        XCTAssertEqual(again.map(\.number), [1, 2])
        XCTAssertTrue(again.allSatisfy { $0.sentAs == nil })
        XCTAssertEqual(ledger.next, 3, "a resend keeps its numbers")
        // Without a reconnect, a lost connection settles the push and those after it.
        a.sentAs = 5
        for (completion, result) in ledger.answered(a, requestID: 5, .failure(lost), retrying: false) { completion(result) }
        XCTAssertEqual(outcomes.summary, ["1:lost", "2:lost"])
    }

    func testARefusalSettlesEveryLaterPushAndItsNumberIsTakenAgain() {
        let ledger = PushLedger()
        let outcomes = Outcomes()
        let entries = (1...3).map { ledger.record(count: 2, messages: messages(2), completion: outcomes.completion($0)) }
        for (i, entry) in entries.enumerated() { entry.sentAs = UInt32(i + 1) }
        let refusal = CometError(code: .quotaExceeded, message: "full")
        for (completion, result) in ledger.answered(entries[1], requestID: 2, .failure(refusal), retrying: false) { completion(result) }
        XCTAssertEqual(outcomes.summary, ["2:QUOTA_EXCEEDED", "3:OUT_OF_ORDER"])
        XCTAssertEqual(ledger.next, 3, "the refused push's numbers (3, 4) are given again")
        // The daemon's OUT_OF_ORDER for push 3 arrives later: it was settled already.
        XCTAssertTrue(ledger.answered(entries[2], requestID: 3, .failure(CometError(code: .outOfOrder, message: "")), retrying: false).isEmpty)
        XCTAssertEqual(ledger.count, 1, "push 1 still waits for its answer")
        let d = ledger.record(count: 1, messages: messages(1), completion: outcomes.completion(4))
        XCTAssertEqual(d.number, 3)
    }
}
