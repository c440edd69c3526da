"""Process-wide observers of mailboxes: how metrics see every mailbox without each caller wiring them.

Mailboxes are made in many places (persona workers, the engine's agent port, the agent SDK, other
programs' code), so an exporter cannot be handed each one. Instead every `Mailbox` reports itself
here when it is made, and offers its handler for wrapping when it starts serving; an installed
observer (`bus.ops.metrics.BusMetrics`) counts and times from there. With no observer installed, both
calls cost a check of an empty tuple.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bus.delivery import Handler
    from bus.mailbox import Mailbox


class MailboxObserver(Protocol):
    def opened(self, mailbox: Mailbox) -> None:
        """A mailbox was made."""
        ...

    def wrap(self, mailbox: Mailbox, handler: Handler) -> Handler:
        """The handler `mailbox.serve` runs, in place of `handler` (to time it, say)."""
        ...


_observers: tuple[MailboxObserver, ...] = ()


def add_observer(observer: MailboxObserver) -> None:
    """Let `observer` see every mailbox made from now on (and the handlers they serve)."""
    global _observers
    if observer not in _observers:
        _observers = (*_observers, observer)


def remove_observer(observer: MailboxObserver) -> None:
    global _observers
    _observers = tuple(o for o in _observers if o is not observer)


def mailbox_opened(mailbox: Mailbox) -> None:
    for observer in _observers:
        observer.opened(mailbox)


def wrap_handler(mailbox: Mailbox, handler: Handler) -> Handler:
    for observer in _observers:
        handler = observer.wrap(mailbox, handler)
    return handler
