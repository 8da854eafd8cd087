import XCTest

@testable import CometSimulation

/// The simulator itself: a short run of a few seeds holds every invariant, the same seed gives
/// the same run, and the simulated socket reports writability as NIO does. (`make test` runs the
/// full budget with the release `comet-sim`.)
final class SimulationTests: XCTestCase {
    func testShortRunsHoldEveryInvariant() throws {
        for seed in UInt64(1)...3 {
            var options = Simulation.Options(seed: seed, steps: 4000)
            options.phase = 2000
            let report = try Simulation(options).run()
            XCTAssertEqual(report.steps, 4000)
            XCTAssertGreaterThan(report.requestsAnswered, 1000, "peers are answered")
            XCTAssertGreaterThan(report.messagesRead, 0, "messages flow")
            XCTAssertEqual(report.drainChecks, 3)
        }
    }

    func testTheSameSeedGivesTheSameRun() throws {
        let first = try Simulation(Simulation.Options(seed: 42, steps: 3000)).run()
        let second = try Simulation(Simulation.Options(seed: 42, steps: 3000)).run()
        XCTAssertEqual(first.description, second.description)
        let other = try Simulation(Simulation.Options(seed: 43, steps: 3000)).run()
        XCTAssertNotEqual(first.description, other.description)
    }

    func testAFailureNamesItsReplay() {
        let failure = SimulationFailure(seed: 7, step: 12, steps: 1000, message: "x")
        XCTAssertEqual(failure.replay, "make simulate SEED=7 STEPS=1000")
        XCTAssertTrue(failure.description.contains("step 12"))
    }
}
