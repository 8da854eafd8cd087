import NIOCore

/// The byte layout of a `DaemonImage` (docs/RESTARTS.md, "Handover format"):
///
///     magic "COMETIMG" | format u16 | reserved u16 | body length u64 | FNV-1a 64 of body | body
///
/// Integers are big-endian; strings and byte strings are a u32 length then the bytes; lists are a
/// u32 count then the items; an optional is a u8 (0 absent, 1 present) then the value.
/// A reader refuses a format it does not know (`unsupportedFormat`), and the writer of a live
/// upgrade asks the new binary first (`cometd --handover-probe`).
public enum ImageCodec {
    public static let magic: [UInt8] = Array("COMETIMG".utf8)
    /// The format this binary writes.
    public static let formatVersion: UInt16 = 3
    /// The formats this binary reads and writes (2 added the channels' producer numbering, 3 the
    /// mapped readers that take their ring back).
    public static let readableFormats: ClosedRange<UInt16> = 1...3
    static let headerSize = 8 + 2 + 2 + 8 + 8

    public static func encode(_ image: DaemonImage) -> ByteBuffer { encode(image, format: formatVersion) }

    /// Writes `format`, one of `readableFormats` (an older one for a next binary that reads no
    /// newer: what only the newer formats hold is left out).
    public static func encode(_ image: DaemonImage, format: UInt16) -> ByteBuffer {
        var body = ByteBufferAllocator().buffer(capacity: 4096)
        image.write(to: &body, format: format)
        var out = ByteBufferAllocator().buffer(capacity: headerSize + body.readableBytes)
        out.writeBytes(magic)
        out.writeInteger(format)
        out.writeInteger(UInt16(0))
        out.writeInteger(UInt64(body.readableBytes))
        out.writeInteger(checksum(body.readableBytesView))
        out.writeBuffer(&body)
        return out
    }

    public static func decode(_ bytes: ByteBuffer) throws(StateError) -> DaemonImage {
        var input = bytes
        guard let head = input.readBytes(length: 8), head == magic else { throw StateError(.notAnImage, "not a cometd image (bad magic)") }
        guard let format = input.readInteger(as: UInt16.self), input.readInteger(as: UInt16.self) != nil else {
            throw StateError(.damaged, "image header cut short")
        }
        guard readableFormats.contains(format) else {
            throw StateError(.unsupportedFormat, "image format \(format) is not one this cometd reads (\(readableFormats))")
        }
        guard let length = input.readInteger(as: UInt64.self), let sum = input.readInteger(as: UInt64.self),
            length <= UInt64(input.readableBytes), var body = input.readSlice(length: Int(length))
        else { throw StateError(.damaged, "image cut short") }
        guard checksum(body.readableBytesView) == sum else { throw StateError(.damaged, "image checksum does not match") }
        let image = try DaemonImage(from: &body, format: format)
        guard body.readableBytes == 0 else { throw StateError(.invalid, "\(body.readableBytes) trailing bytes in image") }
        return image
    }

    /// FNV-1a, 64 bits: catches a torn or damaged image (not an adversary: the image is private
    /// to the daemon and its service manager).
    public static func checksum(_ bytes: ByteBufferView) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }
}

// MARK: Primitive fields

extension ByteBuffer {
    mutating func put(_ value: Bool) { writeInteger(UInt8(value ? 1 : 0)) }
    mutating func put<T: FixedWidthInteger>(_ value: T) { writeInteger(value) }
    mutating func put(_ value: String) {
        let utf8 = Array(value.utf8)
        writeInteger(UInt32(utf8.count))
        writeBytes(utf8)
    }
    mutating func put(bytes value: ByteBuffer) {
        writeInteger(UInt32(value.readableBytes))
        writeImmutableBuffer(value)
    }
    mutating func put<T: FixedWidthInteger>(optional value: T?) {
        if let value {
            writeInteger(UInt8(1))
            writeInteger(value)
        } else {
            writeInteger(UInt8(0))
        }
    }
    mutating func put<T>(list: [T], _ item: (inout ByteBuffer, T) -> Void) {
        writeInteger(UInt32(list.count))
        for element in list { item(&self, element) }
    }

    mutating func take<T: FixedWidthInteger>(_: T.Type = T.self, _ field: StaticString) throws(StateError) -> T {
        guard let value = readInteger(as: T.self) else { throw StateError(.damaged, "image cut short in \(field)") }
        return value
    }
    mutating func takeBool(_ field: StaticString) throws(StateError) -> Bool {
        switch try take(UInt8.self, field) {
        case 0: return false
        case 1: return true
        case let other: throw StateError(.invalid, "\(field) holds \(other), not a boolean")
        }
    }
    mutating func takeString(_ field: StaticString) throws(StateError) -> String {
        let length = try take(UInt32.self, field)
        guard let text = readString(length: Int(length)) else { throw StateError(.damaged, "image cut short in \(field)") }
        return text
    }
    mutating func takeBytes(_ field: StaticString) throws(StateError) -> ByteBuffer {
        let length = try take(UInt32.self, field)
        guard let bytes = readSlice(length: Int(length)) else { throw StateError(.damaged, "image cut short in \(field)") }
        return bytes
    }
    mutating func takeOptional<T: FixedWidthInteger>(_: T.Type = T.self, _ field: StaticString) throws(StateError) -> T? {
        try takeBool(field) ? try take(T.self, field) : nil
    }
    mutating func takeList<T>(_ field: StaticString, _ item: (inout ByteBuffer) throws(StateError) -> T) throws(StateError) -> [T] {
        let count = try take(UInt32.self, field)
        // Every item takes at least one byte: a count beyond what is left is damage, not a reason to allocate.
        guard Int(count) <= readableBytes else { throw StateError(.damaged, "\(field): \(count) items in \(readableBytes) bytes") }
        var items: [T] = []
        items.reserveCapacity(Int(count))
        for _ in 0..<count { items.append(try item(&self)) }
        return items
    }
}

// MARK: Records

extension DaemonImage {
    func write(to out: inout ByteBuffer, format: UInt16) {
        out.put(softwareVersion)
        out.put(instance)
        out.put(nextConnectionID)
        out.put(nextChannelID)
        out.put(nextPrivateID)
        out.put(list: listeners) { $0.put($1) }
        out.put(list: channels) { $1.write(to: &$0, format: format) }
        out.put(list: privateChannels) { $1.write(to: &$0, format: format) }
        out.put(list: sessions) { $1.write(to: &$0) }
        out.put(list: connections) { $1.write(to: &$0, format: format) }
        out.put(list: storedNames) { $0.put($1) }
    }

    init(from input: inout ByteBuffer, format: UInt16) throws(StateError) {
        softwareVersion = try input.takeString("software version")
        instance = try input.take(UInt64.self, "instance")
        nextConnectionID = try input.take(UInt64.self, "next connection id")
        nextChannelID = try input.take(UInt64.self, "next channel id")
        nextPrivateID = try input.take(UInt64.self, "next private id")
        listeners = try input.takeList("listeners") { (b: inout ByteBuffer) throws(StateError) in try b.take(Int32.self, "listener") }
        channels = try input.takeList("channels") { (b: inout ByteBuffer) throws(StateError) in try SiteChannelImage(from: &b, format: format) }
        privateChannels = try input.takeList("private channels") { (b: inout ByteBuffer) throws(StateError) in try PrivateChannelImage(from: &b, format: format) }
        sessions = try input.takeList("sessions") { (b: inout ByteBuffer) throws(StateError) in try SessionImage(from: &b) }
        connections = try input.takeList("connections") { (b: inout ByteBuffer) throws(StateError) in try ConnectionImage(from: &b, format: format) }
        storedNames = try input.takeList("stored names") { (b: inout ByteBuffer) throws(StateError) in try b.takeString("name") }
    }
}

extension PeerImage {
    func write(to out: inout ByteBuffer) {
        out.put(pid)
        out.put(uid)
        out.put(gid)
    }

    init(from input: inout ByteBuffer) throws(StateError) {
        pid = try input.take(Int32.self, "pid")
        uid = try input.take(UInt32.self, "uid")
        gid = try input.take(UInt32.self, "gid")
    }
}

extension SiteChannelImage {
    func write(to out: inout ByteBuffer, format: UInt16) {
        out.put(id)
        out.put(name)
        out.put(epoch)
        out.put(owner)
        out.put(newestOnly)
        out.put(UInt32(size))
        creator.write(to: &out)
        out.put(closed)
        out.put(registered)
        out.put(optional: replacedByEpoch)
        out.put(pushedCount)
        out.put(pushedBytes)
        out.put(deliveredCount)
        out.put(fullCount)
        out.put(tokenHigh)
        out.put(tokenLow)
        if format >= 2 { out.put(numberedFrom) }
        out.put(firstSequence)
        out.put(list: messages) { $0.put(bytes: $1) }
    }

    init(from input: inout ByteBuffer, format: UInt16) throws(StateError) {
        id = try input.take(UInt64.self, "channel id")
        name = try input.takeString("channel name")
        epoch = try input.take(UInt64.self, "epoch")
        owner = try input.take(UInt64.self, "owner")
        newestOnly = try input.takeBool("newest")
        size = Int(try input.take(UInt32.self, "size"))
        creator = try PeerImage(from: &input)
        closed = try input.takeBool("closed")
        registered = try input.takeBool("registered")
        replacedByEpoch = try input.takeOptional(UInt64.self, "replaced by epoch")
        pushedCount = try input.take(UInt64.self, "pushed")
        pushedBytes = try input.take(UInt64.self, "pushed bytes")
        deliveredCount = try input.take(UInt64.self, "delivered")
        fullCount = try input.take(UInt64.self, "full")
        tokenHigh = try input.take(UInt64.self, "token")
        tokenLow = try input.take(UInt64.self, "token")
        numberedFrom = format >= 2 ? try input.take(UInt64.self, "numbered from") : 0
        firstSequence = try input.take(UInt64.self, "first sequence")
        messages = try input.takeList("messages") { (b: inout ByteBuffer) throws(StateError) in try b.takeBytes("message") }
        guard size >= 1, messages.count <= size, firstSequence >= 1 else {
            throw StateError(.invalid, "channel '\(name)': \(messages.count) messages in a ring of \(size) from \(firstSequence)")
        }
    }
}

extension PrivateChannelImage {
    func write(to out: inout ByteBuffer, format: UInt16) {
        out.put(id)
        out.put(name)
        out.put(epoch)
        out.put(session)
        out.put(owner)
        out.put(UInt32(size))
        out.put(unlimited)
        creator.write(to: &out)
        out.put(acknowledged)
        out.put(closed)
        out.put(full)
        out.put(optional: reader)
        out.put(optional: outstandingPull)
        out.put(nextPull)
        out.put(tokenHigh)
        out.put(tokenLow)
        if format >= 2 { out.put(numberedFrom) }
        out.put(firstSequence)
        out.put(list: messages) { $0.put(bytes: $1) }
    }

    init(from input: inout ByteBuffer, format: UInt16) throws(StateError) {
        id = try input.take(UInt64.self, "private id")
        name = try input.takeString("private name")
        epoch = try input.take(UInt64.self, "epoch")
        session = try input.take(UInt64.self, "session")
        owner = try input.take(UInt64.self, "owner")
        size = Int(try input.take(UInt32.self, "size"))
        unlimited = try input.takeBool("unlimited")
        creator = try PeerImage(from: &input)
        acknowledged = try input.take(UInt64.self, "acknowledged")
        closed = try input.takeBool("closed")
        full = try input.takeBool("full")
        reader = try input.takeOptional(UInt64.self, "reader")
        outstandingPull = try input.takeOptional(UInt64.self, "pull")
        nextPull = try input.take(UInt64.self, "next pull")
        tokenHigh = try input.take(UInt64.self, "token")
        tokenLow = try input.take(UInt64.self, "token")
        numberedFrom = format >= 2 ? try input.take(UInt64.self, "numbered from") : 0
        firstSequence = try input.take(UInt64.self, "first sequence")
        messages = try input.takeList("messages") { (b: inout ByteBuffer) throws(StateError) in try b.takeBytes("message") }
        guard size >= 1, messages.count <= size, firstSequence >= 1 else {
            throw StateError(.invalid, "private channel '\(name)': \(messages.count) messages in a ring of \(size)")
        }
    }
}

extension SessionImage {
    func write(to out: inout ByteBuffer) {
        out.put(id)
        out.put(tokenHigh)
        out.put(tokenLow)
        out.put(uid)
        out.put(list: connections) { $0.put($1) }
        out.put(optional: detachedAt)
        out.put(lastActivity)
        out.put(list: channels) {
            $0.put($1.name)
            $0.put($1.handle)
        }
        out.put(charged)
    }

    init(from input: inout ByteBuffer) throws(StateError) {
        id = try input.take(UInt64.self, "session id")
        tokenHigh = try input.take(UInt64.self, "token")
        tokenLow = try input.take(UInt64.self, "token")
        uid = try input.take(UInt32.self, "uid")
        connections = try input.takeList("session connections") { (b: inout ByteBuffer) throws(StateError) in try b.take(UInt64.self, "connection") }
        detachedAt = try input.takeOptional(UInt64.self, "detached at")
        lastActivity = try input.take(UInt64.self, "last activity")
        channels = try input.takeList("session channels") { (b: inout ByteBuffer) throws(StateError) in
            PrivateChannelEntry(name: try b.takeString("name"), handle: try b.take(UInt64.self, "handle"))
        }
        charged = try input.takeBool("charged")
    }
}

extension ConnectionImage {
    func write(to out: inout ByteBuffer, format: UInt16) {
        out.put(id)
        out.put(descriptor)
        out.put(cookie)
        peer.write(to: &out)
        out.put(openedAt)
        out.put(lastRequest)
        out.put(handshaken)
        out.put(counted)
        out.put(inputClosed)
        out.put(optional: session)
        out.put(UInt32(ownedChannels))
        out.put(nextSubscriptionID)
        out.put(list: subscriptions) { $1.write(to: &$0, format: format) }
        out.put(list: timeoutWaits) {
            $0.put($1.session)
            $0.put($1.requestID)
            $0.put($1.timeout)
        }
        out.put(bytes: input)
        out.put(bytes: output)
    }

    init(from input: inout ByteBuffer, format: UInt16) throws(StateError) {
        id = try input.take(UInt64.self, "connection id")
        descriptor = try input.take(Int32.self, "descriptor")
        cookie = try input.take(UInt64.self, "cookie")
        peer = try PeerImage(from: &input)
        openedAt = try input.take(UInt64.self, "opened at")
        lastRequest = try input.take(UInt64.self, "last request")
        handshaken = try input.takeBool("handshaken")
        counted = try input.takeBool("counted")
        inputClosed = try input.takeBool("input closed")
        session = try input.takeOptional(UInt64.self, "session")
        ownedChannels = Int(try input.take(UInt32.self, "owned channels"))
        nextSubscriptionID = try input.take(UInt32.self, "next subscription id")
        subscriptions = try input.takeList("subscriptions") { (b: inout ByteBuffer) throws(StateError) in
            try SubscriptionImage(from: &b, format: format)
        }
        timeoutWaits = try input.takeList("timeout waits") { (b: inout ByteBuffer) throws(StateError) in
            TimeoutWaitImage(
                session: try b.take(UInt64.self, "session"), requestID: try b.take(UInt32.self, "request id"),
                timeout: try b.take(UInt64.self, "timeout"))
        }
        self.input = try input.takeBytes("input")
        output = try input.takeBytes("output")
    }
}

extension SubscriptionImage {
    func write(to out: inout ByteBuffer, format: UInt16) {
        out.put(id)
        out.put(name)
        out.put(source.rawValue)
        out.put(channel)
        out.put(cursor)
        out.put(optional: pinnedOwner)
        if format >= 3 { out.put(returnsToRing) }
    }

    init(from input: inout ByteBuffer, format: UInt16) throws(StateError) {
        id = try input.take(UInt32.self, "subscription id")
        name = try input.takeString("subscription name")
        let tag = try input.take(UInt8.self, "source")
        guard let source = Source(rawValue: tag) else { throw StateError(.invalid, "subscription source \(tag)") }
        self.source = source
        channel = try input.take(UInt64.self, "channel")
        cursor = try input.take(UInt64.self, "cursor")
        pinnedOwner = try input.takeOptional(UInt32.self, "pinned owner")
        returnsToRing = format >= 3 ? try input.takeBool("returns to ring") : false
    }
}
