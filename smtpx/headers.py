"""Headers: the fields of a message as an ordered, case-insensitive multimap of str to str."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar, overload

from ._mime_addr import parse_address, parse_address_list
from .address import Address
from .errors import MailParseError

__all__ = ["Headers"]

_T = TypeVar("_T")


class Headers:
    """Header fields in message order; names compare case-insensitively.

    A field name keeps its original spelling in :meth:`items`, :meth:`keys` and iteration;
    lookups (``get``, ``get_all``, ``in``, ``[]``) ignore case, so ``get("message-id")`` finds
    ``Message-ID``. Repeated fields (``Received``) are all kept, in order. The object is
    read-only; :meth:`smtpx.mail.Mail.headers` builds a fresh one on every call.

    ``len()`` counts fields (repeats included) and iteration yields each field's name, like
    ``multidict``; use ``set(h.keys())`` for distinct names.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        """Build from ``(name, value)`` pairs in message order."""
        self._items: list[tuple[str, str]] = list(items)
        self._index: dict[str, list[str]] | None = None

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            # Built on first lookup: many handlers read a header or two, some read none.
            index = {}
            for name, value in self._items:
                key = name.lower()
                found = index.get(key)
                if found is None:
                    index[key] = [value]
                else:
                    found.append(value)
            self._index = index
        return index

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _T) -> str | _T: ...
    def get(self, name: str, default: object = None) -> object:
        """The first value of field ``name`` (any case), or ``default`` when it is absent."""
        values = self._lookup().get(name.lower())
        return default if values is None else values[0]

    def get_all(self, name: str) -> list[str]:
        """Every value of field ``name`` (any case), in message order; ``[]`` when absent."""
        values = self._lookup().get(name.lower())
        return [] if values is None else list(values)

    def __getitem__(self, name: str) -> str:
        """The first value of field ``name``; raises ``KeyError`` when it is absent."""
        values = self._lookup().get(name.lower())
        if values is None:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equality by content; not hashable

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def keys(self) -> list[str]:
        """Each field's name, original spelling, in order (repeats included)."""
        return [name for name, _ in self._items]

    def values(self) -> list[str]:
        """Each field's value, in order."""
        return [value for _, value in self._items]

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` for each field, original spelling, in message order."""
        return list(self._items)

    def from_(self) -> Address:
        """The one mailbox of the ``From`` field (RFC 5322 3.6.2).

        Raises:
            MailParseError: No ``From`` field, more than one, or a value that is not exactly
                one mailbox (a group or a list of authors).
        """
        values = self.get_all("From")
        if len(values) != 1:
            raise MailParseError(
                "mail: no From header" if not values else "mail: more than one From header"
            )
        return parse_address(values[0])

    def to(self) -> list[Address]:
        """The mailboxes of every ``To`` field, in order (groups flattened; ``[]`` if none).

        RFC 5322 3.6 allows one ``To`` field; a message with several gets all of them (the Go
        package read only the first).

        Raises:
            MailParseError: A ``To`` value is not an address list.
        """
        return self.addresses("To")

    def addresses(self, name: str) -> list[Address]:
        """The mailboxes of every field ``name`` (``Cc``, ``Reply-To``...), in order.

        Raises:
            MailParseError: A value is not an RFC 5322 address list.
        """
        out: list[Address] = []
        for value in self.get_all(name):
            out.extend(parse_address_list(value))
        return out
