/// First byte of every frame body: what the frame is.
///
/// `0x01...0x7F` are requests (client to server), `0x80...0x8F` responses,
/// `0x90...0xBF` events (server to client, unsolicited).
public enum Opcode: UInt8, Sendable, CaseIterable {
    // Requests.
    case hello = 0x01
    case create = 0x02
    case push = 0x03
    case pushBatch = 0x04
    case close = 0x05
    case subscribe = 0x06
    case unsubscribe = 0x07
    case list = 0x08
    case ping = 0x09
    case resume = 0x0A
    case createPrivate = 0x0B
    case ack = 0x0C
    case sessions = 0x0D
    case answer = 0x0E
    case waitTimeout = 0x0F
    case subscribeExternal = 0x10
    case listFrom = 0x11
    case sessionsFrom = 0x12
    case stats = 0x13
    case adopt = 0x14
    case pushNumbered = 0x15
    case mirror = 0x16
    case mirrorPush = 0x17
    case mirrorState = 0x18
    case bridgeReport = 0x19
    case ring = 0x1A
    // Responses.
    case ok = 0x80
    case error = 0x81
    // Events.
    case message = 0x90
    case full = 0x91
    case closed = 0x92
    case started = 0x93
    case offer = 0x94
    case ended = 0x95
    case pull = 0x96
    case reset = 0x97
    case failed = 0x98
    case ringAdvanced = 0x99
    case ringDetached = 0x9A
}
