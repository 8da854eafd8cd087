/// Why a channel or session operation was refused. The connection layer maps each code to a wire error.
public struct ChannelRefusal: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: Hashable, Sendable {
        case invalidName
        case invalidSize
        case invalidPosition
        case channelExists
        case noSuchChannel
        case notOwner
        case channelClosed
        case positionAhead
        case limitExceeded
        case epochMismatch
        case channelFull
        case alreadySubscribed
        case pullNotRequested
        case noSuchSession
        case badToken
        case wrongUser
        /// A per-user quota, a daemon-wide limit or the memory ceiling (the message names which).
        case quotaExceeded
        /// The policy does not let this user do this.
        case permissionDenied
        /// The channel's producer is not the owner the reader pinned.
        case ownerMismatch
        /// A numbered push past the producer's next number.
        case outOfOrder
        /// A push the channel does not take in this form (an unnumbered push to a numbered channel).
        case wrongPushKind
        /// Something this daemon does not do (the message says what does).
        case unsupported
        /// An import's origin cannot be reached (the message says since when and why).
        case upstreamUnreachable
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
