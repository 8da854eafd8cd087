import CometSimulation
import Dispatch
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// comet-sim: runs the deterministic simulation of the daemon core (docs/FLOW.md).
///   comet-sim [--seed N] [--seeds K] [--steps N] [--stall-seconds S]
/// Seeds N, N+1, … N+K-1, each for the steps given. A broken invariant prints the seed, the step
/// and the command that replays it, and exits 1; a step that does not finish (a livelock) is
/// reported the same way by a watchdog, with exit 2.
func value(_ flag: String, _ fallback: UInt64) -> UInt64 {
    let args = CommandLine.arguments
    guard let i = args.firstIndex(of: flag), i + 1 < args.count, let n = UInt64(args[i + 1]) else { return fallback }
    return n
}

let firstSeed = value("--seed", 1)
let seeds = value("--seeds", 1)
let steps = Int(value("--steps", 100_000))
let stallSeconds = Int(value("--stall-seconds", 20))

/// The seed and step in progress, and when the step began, for the watchdog.
let progress = NIOLockedValueBox((seed: firstSeed, step: 0, since: DispatchTime.now()))
DispatchQueue.global().async {
    while true {
        sleep(1)
        let (seed, step, since) = progress.withLockedValue { $0 }
        let stalled = (DispatchTime.now().uptimeNanoseconds - since.uptimeNanoseconds) / 1_000_000_000
        if stalled >= stallSeconds {
            print("FAIL seed \(seed), step \(step): the step did not finish in \(stalled) s: the event loop runs without progress (livelock)")
            print("  replay: make simulate SEED=\(seed) STEPS=\(steps)")
            exit(2)
        }
    }
}

let started = DispatchTime.now()
var total = 0
var checks = 0
for seed in firstSeed..<(firstSeed + seeds) {
    let simulation = Simulation(Simulation.Options(seed: seed, steps: steps))
    simulation.onStep = { step in
        if step & 255 == 0 || step < 256 { progress.withLockedValue { $0 = (seed, step, DispatchTime.now()) } }
    }
    do {
        let report = try simulation.run()
        total += report.steps
        checks += report.invariantChecks
        print(report)
    } catch {
        print("FAIL \(error)")
        exit(1)
    }
}
let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
print("simulated \(total) peer steps over \(seeds) seed(s) in \(Int(seconds * 10) / 10) s (\(Int(Double(total) / seconds)) steps/s), \(checks) invariant checks: no invariant broken")
