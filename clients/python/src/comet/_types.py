"""The values the client hands out: messages, positions, owners, listings, session credentials."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Literal, NamedTuple, Union


class Message(tuple[int, bytes]):
    """One message of a subscription: its `sequence` number and its `data`. A tuple, so
    ``sequence, data = message`` works too."""

    __slots__ = ()

    @property
    def sequence(self) -> int:
        """The message's sequence number in its channel (1, 2, 3, …; per epoch)."""
        return self[0]

    @property
    def data(self) -> bytes:
        """The payload, as pushed."""
        return self[1]

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (invalid bytes replaced)."""
        return self[1].decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"Message(sequence={self[0]}, data={self[1]!r})"


@dataclass(frozen=True)
class Last:
    """Position: exactly the `count` most recent messages (all buffered ones if fewer)."""

    count: int


#: Where a subscription starts: ``"next"`` (only what is pushed from now on), ``"oldest"`` (the
#: oldest message still buffered), a sequence number ``N >= 1`` (resume at N), ``Last(k)`` or a
#: negative ``-k`` (the k most recent).
Position = Union[Literal["next", "oldest"], int, Last]

#: Whose channel a reader accepts: ``"implied"`` (default: ``user.NAME.…`` only from user NAME,
#: any creator otherwise), ``"any"``, a uid, or a user name.
OwnerPin = Union[Literal["implied", "any"], int, str]


class Owner(NamedTuple):
    """Who created a channel (the uid and gid of its producer, from SO_PEERCRED)."""

    uid: int
    gid: int

    @property
    def known(self) -> bool:
        """False while a waiting subscription's channel does not exist yet."""
        return self.uid != 0xFFFFFFFF


UNKNOWN_OWNER = Owner(0xFFFFFFFF, 0xFFFFFFFF)


@dataclass(frozen=True)
class SessionCredentials:
    """A session's id (public) and resume token (secret): what RESUME needs."""

    id: int
    token: tuple[int, int]


@dataclass(frozen=True)
class ChannelInfo:
    """One channel in `Client.channels()` (LIST)."""

    name: str
    kind: int
    scope: int
    size: int
    buffered: int
    subscribers: int
    last_sequence: int
    epoch: int
    owner: Owner = UNKNOWN_OWNER
    imported: bool = False
    #: The policy rule that decides who may create the name ("" when none: first come).
    rule: str = ""
    #: 0 no rule, 1 the rule lets the owner, 2 it does not (readers must pin the owner).
    standing: int = 0

    @property
    def is_private(self) -> bool:
        return self.scope == 1


@dataclass(frozen=True)
class SessionInfo:
    """One session in `Client.sessions()` (SESSIONS)."""

    id: int
    uid: int
    connections: int
    private_channels: int
    idle_ms: int


@dataclass(frozen=True)
class Offer:
    """A private channel addressed to this client's session (OFFER)."""

    channel: int
    kind: int
    epoch: int
    name: str
    owner: Owner


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a client reconnects after its connection to cometd is lost (a crash of the daemon):
    delays from `initial_delay` doubling to `max_delay`, for up to `give_up_after` seconds."""

    initial_delay: float = 0.02
    max_delay: float = 2.0
    give_up_after: float = 60.0


def default_socket_path() -> str:
    """The socket the CLI and libcomet use when none is given: ``$COMET_SOCKET``, else
    ``/run/comet/comet.sock`` for root, else ``$XDG_RUNTIME_DIR/comet/comet.sock``."""
    explicit = os.environ.get("COMET_SOCKET")
    if explicit:
        return explicit
    if os.geteuid() == 0:
        return "/run/comet/comet.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        raise LookupError("no socket path: set COMET_SOCKET or XDG_RUNTIME_DIR, or name one")
    return runtime + "/comet/comet.sock"


USER_NAMESPACE = "user."


def implied_owner(name: str) -> int | None:
    """The uid a channel name implies (docs/POLICY.md): ``user.NAME.REST`` is user NAME's (NAME a
    user name or a uid in decimal); None for other names or unknown users."""
    if not name.startswith(USER_NAMESPACE):
        return None
    user, dot, rest = name[len(USER_NAMESPACE) :].partition(".")
    if not user or not dot or not rest:
        return None
    if user.isdigit():
        return int(user) if int(user) <= 0xFFFFFFFF else None
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def owner_uid(pin: OwnerPin, name: str) -> int | None:
    """The uid SUBSCRIBE pins for `pin` on channel `name`, or None."""
    if pin == "implied":
        return implied_owner(name)
    if pin == "any":
        return None
    if isinstance(pin, int):
        return pin
    if pin.isdigit():
        return int(pin)
    try:
        return pwd.getpwnam(pin).pw_uid
    except KeyError:
        raise ValueError(f"no user named {pin!r}") from None
