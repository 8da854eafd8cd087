import XCTest

@testable import CometServer

/// The input state machine alone: every stopped state is left only by its own event, and input
/// goes back to reading when nothing is pending.
final class InputFlowTests: XCTestCase {
    func testReadsPassWhileReadingAndWaitWhileStopped() {
        var flow = InputFlow()
        XCTAssertTrue(flow.isHandling)
        XCTAssertEqual(flow.readRequested(), InputFlow.Actions(read: true))
        XCTAssertEqual(flow.processed(.outputBlocked), .none)
        XCTAssertEqual(flow.state, .waitingForOutput)
        XCTAssertTrue(flow.isStopped)
        XCTAssertEqual(flow.readRequested(), .none, "a read asked for while stopped is held")
        XCTAssertEqual(flow.writable(), InputFlow.Actions(process: true))
        XCTAssertEqual(flow.processed(.drained), InputFlow.Actions(read: true), "the held read goes on once drained")
        XCTAssertEqual(flow.state, .reading)
        XCTAssertEqual(flow.processed(.drained), .none, "no read was held: nothing to pass on")
    }

    func testEachStoppedStateIgnoresTheOthersEvents() {
        var flow = InputFlow()
        _ = flow.processed(.pushHeld)
        XCTAssertEqual(flow.state, .holding)
        XCTAssertEqual(flow.writable(), .none, "writability does not release a held push")
        XCTAssertEqual(flow.nextTurn(), .none)
        XCTAssertEqual(flow.holdReleased(), InputFlow.Actions(process: true))

        XCTAssertEqual(flow.processed(.turnUsed), InputFlow.Actions(scheduleTurn: true))
        XCTAssertEqual(flow.state, .yielding)
        XCTAssertEqual(flow.holdReleased(), .none)
        XCTAssertEqual(flow.writable(), .none)
        XCTAssertEqual(flow.nextTurn(), InputFlow.Actions(process: true))

        _ = flow.processed(.outputBlocked)
        XCTAssertEqual(flow.nextTurn(), .none, "a turn does not end a wait for output")
        XCTAssertEqual(flow.holdReleased(), .none)
        XCTAssertEqual(flow.writable(), InputFlow.Actions(process: true))
    }

    func testEventsInTheReadingStateDoNothing() {
        var flow = InputFlow()
        XCTAssertEqual(flow.writable(), .none)
        XCTAssertEqual(flow.nextTurn(), .none)
        XCTAssertEqual(flow.holdReleased(), .none)
        XCTAssertEqual(flow.adopted(), .none)
        XCTAssertEqual(flow.state, .reading)
    }

    func testAdoptionHoldsEverythingUntilAllAreBack() {
        var flow = InputFlow(adopting: true)
        XCTAssertFalse(flow.isHandling)
        XCTAssertEqual(flow.readRequested(), .none)
        XCTAssertEqual(flow.processed(.drained), .none, "nothing is handled while adopting")
        XCTAssertEqual(flow.writable(), .none)
        XCTAssertEqual(flow.adopted(), InputFlow.Actions(process: true))
        XCTAssertEqual(flow.processed(.drained), InputFlow.Actions(read: true))
    }

    func testClosedIsFinal() {
        var flow = InputFlow()
        _ = flow.processed(.outputBlocked)
        flow.close()
        XCTAssertEqual(flow.writable(), .none)
        XCTAssertEqual(flow.readRequested(), .none)
        XCTAssertEqual(flow.processed(.drained), .none)
        XCTAssertEqual(flow.state, .closed)
        XCTAssertFalse(flow.isStopped)
    }
}
