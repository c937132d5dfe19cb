"""Delivery Status Notification parameters (RFC 3461) as the handler sees them.

With ``Server(dsn=True)`` the server advertises DSN and parses ``RET`` and ``ENVID`` on MAIL,
``NOTIFY`` and ``ORCPT`` on RCPT. The values reach the handler on the envelope:
``envelope.dsn_ret``, ``envelope.dsn_envid`` and ``envelope.rcpt_dsn`` (one ``RecipientDSN``
per entry of ``envelope.rcpt_to``, in the same order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["NotifyKeyword", "OriginalRecipient", "RecipientDSN", "ReturnContent"]

ReturnContent = Literal["FULL", "HDRS"]
"""``RET=``: return the full message or only its headers in a failure DSN (RFC 3461 4.3)."""

NotifyKeyword = Literal["NEVER", "SUCCESS", "FAILURE", "DELAY"]
"""One ``NOTIFY=`` keyword (RFC 3461 4.1)."""


@dataclass(frozen=True, slots=True)
class OriginalRecipient:
    """``ORCPT=``: the recipient as the original sender gave it (RFC 3461 4.2).

    Attributes:
        addr_type: ``"rfc822"``, or ``"utf-8"`` (RFC 6533) in an SMTPUTF8 transaction;
            always lower case.
        address: The decoded address (xtext, and for ``utf-8`` the backslash-x escapes,
            undone). It holds no control characters.
    """

    addr_type: Literal["rfc822", "utf-8"]
    address: str


@dataclass(frozen=True, slots=True)
class RecipientDSN:
    """The DSN parameters of one RCPT command.

    Attributes:
        notify: None when NOTIFY was not given (the default: FAILURE and perhaps DELAY);
            ``("NEVER",)``, or SUCCESS, FAILURE and DELAY in the order given.
        orcpt: The original recipient, or None.
    """

    notify: tuple[NotifyKeyword, ...] | None = None
    orcpt: OriginalRecipient | None = None
