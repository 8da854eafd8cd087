/// The grammar of channel names (docs/SEMANTICS.md, "Names").
///
/// 1 to 255 bytes of ASCII letters, digits and `. _ - : / @`, starting with a letter or a digit.
public enum ChannelName {
    public static let maxLength = 255

    /// Checks `name` against the grammar.
    public static func validate(_ name: String) throws(ChannelRefusal) {
        let bytes = name.utf8
        guard !bytes.isEmpty else { throw ChannelRefusal(.invalidName, "channel name is empty") }
        guard bytes.count <= maxLength else {
            throw ChannelRefusal(.invalidName, "channel name is \(bytes.count) bytes; the maximum is \(maxLength)")
        }
        guard isAlphanumeric(bytes.first!) else {
            throw ChannelRefusal(.invalidName, "channel name must start with a letter or a digit")
        }
        for byte in bytes where !(isAlphanumeric(byte) || allowedPunctuation.contains(byte)) {
            throw ChannelRefusal(.invalidName, "channel name contains byte 0x\(String(byte, radix: 16)), outside [A-Za-z0-9._:/@-]")
        }
    }

    private static let allowedPunctuation: Set<UInt8> = Set(".-_:/@".utf8)

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }
}
