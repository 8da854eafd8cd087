/// Who holds what: usage of every `Resource` per uid and in total, checked against `Quotas`.
///
/// Plain state with no I/O. Every charge is released by the code that made it when the object
/// dies, so usage returns to zero when a user's connections are gone. A refused charge changes
/// nothing.
public final class ResourceAccounts {
    public var quotas: Quotas
    public private(set) var totals = [Int](repeating: 0, count: Resource.allCases.count)
    private var users: [UInt32: [Int]] = [:]
    /// The uid charged for what the daemon holds on its own behalf (relays): held to the totals only.
    public static let daemon = UInt32(0)

    public init(quotas: Quotas) { self.quotas = quotas }

    /// Every uid that holds something (or held something since it was last at zero).
    public var uids: [UInt32] { Array(users.keys) }

    /// Usage of `resource` by `uid`.
    public func usage(_ resource: Resource, uid: UInt32) -> Int { users[uid]?[resource.rawValue] ?? 0 }

    /// Daemon-wide usage of `resource`.
    public func total(_ resource: Resource) -> Int { totals[resource.rawValue] }

    /// Estimated memory of everything accounted, in bytes.
    public var estimatedMemory: Int {
        Resource.allCases.reduce(0) { $0 + totals[$1.rawValue] * $1.estimatedBytesPerObject }
    }

    /// The uids that hold anything, with their usage.
    public var byUser: [UInt32: [Resource: Int]] {
        users.mapValues { counts in
            Dictionary(uniqueKeysWithValues: Resource.allCases.map { ($0, counts[$0.rawValue]) })
        }
    }

    /// Whether `uid` could take `amount` more of `resource`; the refusal names what is exhausted.
    public func check(_ resource: Resource, _ amount: Int = 1, uid: UInt32) throws(ChannelRefusal) {
        guard amount > 0 else { return }
        let index = resource.rawValue
        if uid != 0 {
            let used = users[uid]?[index] ?? 0
            let quota = quotas.perUser(resource)
            guard used + amount <= quota else {
                throw ChannelRefusal(.quotaExceeded, "quota: user \(uid) holds \(Self.format(used, resource)) of \(resource) (per-user quota \(Self.format(quota, resource)))")
            }
        }
        let total = quotas.total(resource)
        guard totals[index] + amount <= total else {
            throw ChannelRefusal(.quotaExceeded, "quota: the daemon holds \(Self.format(totals[index], resource)) of \(resource) (limit \(Self.format(total, resource)))")
        }
        let memory = estimatedMemory + amount * resource.estimatedBytesPerObject
        guard memory <= quotas.memoryCeiling else {
            throw ChannelRefusal(.quotaExceeded, "quota: memory: the daemon's estimated memory would pass its ceiling of \(Self.format(quotas.memoryCeiling, .bufferedBytes)) (\(resource))")
        }
    }

    /// Charges `amount` of `resource` to `uid` if quotas allow, else throws and charges nothing.
    public func charge(_ resource: Resource, _ amount: Int = 1, uid: UInt32) throws(ChannelRefusal) {
        try check(resource, amount, uid: uid)
        force(resource, amount, uid: uid)
    }

    /// Charges without a check (what was already received or written must be counted).
    public func force(_ resource: Resource, _ amount: Int = 1, uid: UInt32) {
        guard amount != 0 else { return }
        totals[resource.rawValue] += amount
        users[uid, default: [Int](repeating: 0, count: Resource.allCases.count)][resource.rawValue] += amount
    }

    /// Gives back `amount` of `resource` charged to `uid`.
    public func release(_ resource: Resource, _ amount: Int = 1, uid: UInt32) {
        guard amount != 0, var counts = users[uid] else { return }
        let index = resource.rawValue
        let taken = min(amount, counts[index])
        counts[index] -= taken
        totals[index] -= taken
        users[uid] = counts.allSatisfy { $0 == 0 } ? nil : counts
    }

    /// Whether `uid` is at or over its quota of `resource`, or the daemon at its total of it.
    public func isExhausted(_ resource: Resource, uid: UInt32) -> Bool {
        (uid != 0 && usage(resource, uid: uid) >= quotas.perUser(resource))
            || totals[resource.rawValue] >= quotas.total(resource)
    }

    static func format(_ value: Int, _ resource: Resource) -> String {
        guard resource.isBytes else { return "\(value)" }
        if value >= 1 << 30 { return String(format1(Double(value) / Double(1 << 30))) + " GiB" }
        if value >= 1 << 20 { return String(format1(Double(value) / Double(1 << 20))) + " MiB" }
        if value >= 1 << 10 { return String(format1(Double(value) / Double(1 << 10))) + " KiB" }
        return "\(value) B"
    }

    private static func format1(_ x: Double) -> String {
        let tenths = Int((x * 10).rounded())
        return tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
    }
}
