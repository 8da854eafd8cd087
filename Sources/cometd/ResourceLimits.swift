import CometChannels
import FoundationEssentials
import Glibc
import Logging

/// What the machine and the service manager give the daemon: file descriptors and memory.
enum ResourceLimits {
    /// Descriptors kept for listening sockets, relays, logs and files.
    static let reservedDescriptors = 64

    /// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit in force.
    @discardableResult
    static func raiseDescriptorLimit(logger: Logger) -> Int {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            let before = limit.rlim_cur
            limit.rlim_cur = limit.rlim_max
            if setrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 {
                logger.debug("raised the descriptor limit", metadata: ["from": "\(before)", "to": "\(limit.rlim_max)"])
            } else {
                _ = getrlimit(RLIMIT_NOFILE_VALUE, &limit)
            }
        }
        return Int(clamping: limit.rlim_cur)
    }

    private static var RLIMIT_NOFILE_VALUE: __rlimit_resource_t { __rlimit_resource_t(RLIMIT_NOFILE.rawValue) }

    /// The memory ceiling when none is given: three quarters of the service's memory limit
    /// (cgroup `memory.max`, i.e. the unit's MemoryMax=) if it has one below the machine's
    /// memory, else a quarter of the machine's memory.
    static func defaultMemoryCeiling() -> Int {
        let physical = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
        if let limit = cgroupMemoryLimit(), limit < physical { return limit / 4 * 3 }
        return physical / 4
    }

    /// The memory limit of this process's cgroup (v2 `memory.max`, or v1 `memory.limit_in_bytes`).
    static func cgroupMemoryLimit() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(parts[2])
            let file: String
            if parts[0] == "0" && parts[1].isEmpty {
                file = "/sys/fs/cgroup\(path)/memory.max"
            } else if parts[1].split(separator: ",").contains("memory") {
                file = "/sys/fs/cgroup/memory\(path)/memory.limit_in_bytes"
            } else {
                continue
            }
            if let value = try? String(contentsOfFile: file, encoding: .utf8).split(whereSeparator: \.isWhitespace).first,
                let bytes = Int(value)
            {
                return bytes
            }
        }
        return nil
    }
}

/// A byte count with an optional K, M or G suffix (powers of 1024).
struct ByteSize {
    let bytes: Int

    init?(_ text: String) {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = text.uppercased()
        if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") { digits.removeLast() }
        var factor = 1
        if let last = digits.last, let unit = units[last] {
            factor = unit
            digits.removeLast()
        }
        guard let value = Int(digits), value >= 0, value <= Int.max / factor else { return nil }
        bytes = value * factor
    }
}
