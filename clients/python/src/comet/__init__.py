"""comet for Python: an asyncio client of cometd, the local push service (docs/PROTOCOL.md).

    import asyncio, comet

    async def main() -> None:
        async with await comet.connect() as client:
            alerts = await client.create("alerts")
            await alerts.push("disk almost full")
            async for message in await client.subscribe("alerts", "oldest"):
                print(message.sequence, message.text)

    asyncio.run(main())
"""

from ._client import Client, connect
from ._producer import Producer, PullHandler
from ._subscription import Subscription
from ._sync import listen
from ._types import (
    ChannelInfo,
    Last,
    Message,
    Offer,
    Owner,
    OwnerPin,
    Position,
    ReconnectPolicy,
    SessionCredentials,
    SessionInfo,
    default_socket_path,
    implied_owner,
)
from ._wire import ExportReport, HelloReply, ImportReport, Stats, StatsEntry, UsageEntry
from .errors import (
    AlreadySubscribed,
    BadToken,
    ChannelClosed,
    ChannelExists,
    ChannelFull,
    ChannelReset,
    CometError,
    ConnectionLost,
    EpochMismatch,
    ErrorCode,
    InvalidAddress,
    InvalidArgument,
    InvalidName,
    LimitExceeded,
    LoopDetected,
    NoSuchChannel,
    NoSuchSession,
    NoSuchSubscription,
    NotOwner,
    OutOfOrder,
    OwnerMismatch,
    PermissionDenied,
    PositionAhead,
    ProtocolError,
    PullNotRequested,
    QuotaExceeded,
    SessionEnded,
    ShuttingDown,
    TimedOut,
    Unreachable,
    Unsupported,
    UpstreamUnreachable,
    UpstreamVersion,
    WrongUser,
)

__version__ = "0.8.0"

__all__ = [
    "AlreadySubscribed", "BadToken", "ChannelClosed", "ChannelExists", "ChannelFull", "ChannelInfo", "ChannelReset",
    "Client", "CometError", "ConnectionLost", "EpochMismatch", "ErrorCode", "ExportReport", "HelloReply",
    "ImportReport", "InvalidAddress", "InvalidArgument", "InvalidName", "Last", "LimitExceeded", "LoopDetected",
    "Message", "NoSuchChannel", "NoSuchSession", "NoSuchSubscription", "NotOwner", "Offer", "OutOfOrder", "Owner",
    "OwnerMismatch", "OwnerPin", "PermissionDenied", "Position", "PositionAhead", "Producer", "ProtocolError",
    "PullHandler", "PullNotRequested", "QuotaExceeded", "ReconnectPolicy", "SessionCredentials", "SessionEnded",
    "SessionInfo", "ShuttingDown", "Stats", "StatsEntry", "Subscription", "TimedOut", "Unreachable", "Unsupported",
    "UpstreamUnreachable", "UpstreamVersion", "UsageEntry", "WrongUser", "connect", "default_socket_path",
    "implied_owner", "listen",
]
