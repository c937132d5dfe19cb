"""Address: one mailbox, as named on the SMTP envelope or in a header."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Address"]


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox address with an optional display name.

    The SMTP null reverse-path ``MAIL FROM:<>`` is ``Address("")``.

    Attributes:
        address: The addr-spec, ``local@domain`` (empty for the null path).
        name: The display name, decoded (header addresses only).
    """

    address: str
    name: str = ""

    @property
    def local_part(self) -> str:
        """The part before the last ``@`` (the whole address if there is none)."""
        at = self.address.rfind("@")
        return self.address if at < 0 else self.address[:at]

    @property
    def domain(self) -> str:
        """The lowercased part after the last ``@`` ("" if there is none)."""
        at = self.address.rfind("@")
        return "" if at < 0 else self.address[at + 1 :].lower()

    def __str__(self) -> str:
        if self.name:
            quoted = self.name.replace("\\", "\\\\").replace('"', '\\"')
            return f'"{quoted}" <{self.address}>'
        return f"<{self.address}>"
