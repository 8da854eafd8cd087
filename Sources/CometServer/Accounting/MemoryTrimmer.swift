/// When to give freed heap memory back to the system: after a big release, and only once the
/// daemon is quiet (trimming a large heap stalls the loop for tens of milliseconds).
struct MemoryTrimmer: Sendable {
    /// Estimated memory when memory was last returned (or its peak since).
    private var atLastTrim = 0
    /// Requests handled and messages pushed since the last sweep.
    private var requestsSinceSweep = 0
    private var quietSweeps = 0

    /// Counts work since the last sweep.
    mutating func count(_ requests: Int) { requestsSinceSweep &+= requests }

    /// A sweep with `memory` estimated: whether to return freed memory now (after two quiet
    /// sweeps in a row — a burst that ended, not a pause between two — and 16 MiB released).
    mutating func sweep(memory: Int) -> Bool {
        quietSweeps = requestsSinceSweep < 1000 ? quietSweeps + 1 : 0
        requestsSinceSweep = 0
        if atLastTrim - memory > 16 << 20, quietSweeps >= 2 {
            atLastTrim = memory
            return true
        }
        atLastTrim = max(atLastTrim, memory)
        return false
    }
}
