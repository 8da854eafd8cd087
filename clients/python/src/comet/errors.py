"""Errors: every failure the daemon reports is a `CometError` carrying its code (docs/PROTOCOL.md §8)."""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """The numbered errors of the protocol."""

    UNSUPPORTED_VERSION = 1
    MALFORMED_FRAME = 2
    FRAME_TOO_LARGE = 3
    UNKNOWN_OPERATION = 4
    HANDSHAKE_REQUIRED = 5
    INVALID_NAME = 6
    INVALID_ARGUMENT = 7
    CHANNEL_EXISTS = 8
    NO_SUCH_CHANNEL = 9
    NOT_OWNER = 10
    CHANNEL_CLOSED = 11
    NO_SUCH_SUBSCRIPTION = 12
    EPOCH_MISMATCH = 13
    POSITION_AHEAD = 14
    LIMIT_EXCEEDED = 15
    CHANNEL_FULL = 16
    UNSUPPORTED = 17
    SHUTTING_DOWN = 18
    NO_SUCH_SESSION = 19
    BAD_TOKEN = 20
    WRONG_USER = 21
    ALREADY_SUBSCRIBED = 22
    SESSION_ENDED = 23
    PULL_NOT_REQUESTED = 24
    UPSTREAM_UNREACHABLE = 25
    LOOP_DETECTED = 26
    UPSTREAM_VERSION = 27
    INVALID_ADDRESS = 28
    QUOTA_EXCEEDED = 29
    PERMISSION_DENIED = 30
    OWNER_MISMATCH = 31
    TIMED_OUT = 32
    OUT_OF_ORDER = 33
    INTERNAL = 255


class CometError(Exception):
    """A refusal or failure reported by the daemon: `code` (an `ErrorCode`, or the raw number of a
    code this package does not know) and the daemon's `message`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{_name(code)}: {message}")
        self.code: ErrorCode | int = _code(code)
        self.message = message

    @property
    def name(self) -> str:
        """The code's protocol name, e.g. ``QUOTA_EXCEEDED``."""
        return _name(self.code)


def _code(code: int) -> ErrorCode | int:
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def _name(code: int) -> str:
    c = _code(code)
    return c.name if isinstance(c, ErrorCode) else f"ERROR_{code}"


class ChannelFull(CometError):
    """A subscription fell behind its channel's ring (the FULL event): `first_available` is the oldest
    message still buffered; subscribe again from it to go on. Also a push refused because a private
    channel overflowed (`first_available` is then None)."""

    def __init__(self, message: str, first_available: int | None = None) -> None:
        super().__init__(ErrorCode.CHANNEL_FULL, message)
        self.first_available = first_available


class ChannelReset(CometError):
    """The channel was re-created (the RESET event): its numbering restarted under `epoch`."""

    def __init__(self, epoch: int) -> None:
        super().__init__(ErrorCode.EPOCH_MISMATCH, f"the channel was re-created with epoch {epoch}")
        self.epoch = epoch


class ChannelClosed(CometError):
    """The channel a producer held is gone: closed, or ended without its CLOSE (ENDED)."""


class InvalidName(CometError): ...
class InvalidArgument(CometError): ...
class ChannelExists(CometError): ...
class NoSuchChannel(CometError): ...
class NotOwner(CometError): ...
class NoSuchSubscription(CometError): ...
class EpochMismatch(CometError): ...
class PositionAhead(CometError): ...
class LimitExceeded(CometError): ...
class Unsupported(CometError): ...
class ShuttingDown(CometError): ...
class NoSuchSession(CometError): ...
class BadToken(CometError): ...
class WrongUser(CometError): ...
class AlreadySubscribed(CometError): ...
class SessionEnded(CometError): ...
class PullNotRequested(CometError): ...
class UpstreamUnreachable(CometError): ...
class LoopDetected(CometError): ...
class UpstreamVersion(CometError): ...
class InvalidAddress(CometError): ...
class QuotaExceeded(CometError): ...
class PermissionDenied(CometError): ...
class OwnerMismatch(CometError): ...
class TimedOut(CometError): ...
class OutOfOrder(CometError): ...
class ProtocolError(CometError):
    """The daemon refused a frame of this connection (a fatal error with request id 0)."""


_CLASSES: dict[int, type[CometError]] = {
    ErrorCode.INVALID_NAME: InvalidName,
    ErrorCode.INVALID_ARGUMENT: InvalidArgument,
    ErrorCode.CHANNEL_EXISTS: ChannelExists,
    ErrorCode.NO_SUCH_CHANNEL: NoSuchChannel,
    ErrorCode.NOT_OWNER: NotOwner,
    ErrorCode.CHANNEL_CLOSED: ChannelClosed,
    ErrorCode.NO_SUCH_SUBSCRIPTION: NoSuchSubscription,
    ErrorCode.EPOCH_MISMATCH: EpochMismatch,
    ErrorCode.POSITION_AHEAD: PositionAhead,
    ErrorCode.LIMIT_EXCEEDED: LimitExceeded,
    ErrorCode.UNSUPPORTED: Unsupported,
    ErrorCode.SHUTTING_DOWN: ShuttingDown,
    ErrorCode.NO_SUCH_SESSION: NoSuchSession,
    ErrorCode.BAD_TOKEN: BadToken,
    ErrorCode.WRONG_USER: WrongUser,
    ErrorCode.ALREADY_SUBSCRIBED: AlreadySubscribed,
    ErrorCode.SESSION_ENDED: SessionEnded,
    ErrorCode.PULL_NOT_REQUESTED: PullNotRequested,
    ErrorCode.UPSTREAM_UNREACHABLE: UpstreamUnreachable,
    ErrorCode.LOOP_DETECTED: LoopDetected,
    ErrorCode.UPSTREAM_VERSION: UpstreamVersion,
    ErrorCode.INVALID_ADDRESS: InvalidAddress,
    ErrorCode.QUOTA_EXCEEDED: QuotaExceeded,
    ErrorCode.PERMISSION_DENIED: PermissionDenied,
    ErrorCode.OWNER_MISMATCH: OwnerMismatch,
    ErrorCode.TIMED_OUT: TimedOut,
    ErrorCode.OUT_OF_ORDER: OutOfOrder,
}


def error_for(code: int, message: str) -> CometError:
    """The exception for an ERROR or FAILED frame."""
    if code == ErrorCode.CHANNEL_FULL:
        return ChannelFull(message)
    cls = _CLASSES.get(code)
    return cls(code, message) if cls else CometError(code, message)


class ConnectionLost(ConnectionError):
    """The connection to cometd ended; a request in flight may or may not have been applied
    (numbered pushes, which a reconnecting client sends again, excepted)."""


class Unreachable(ConnectionError):
    """No cometd answers at the socket path."""
