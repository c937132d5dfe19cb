"""Fixtures of the mail tests: a ``Mail`` factory bound to one header-parser twin."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import smtpx.mail
from smtpx.mail import Mail
from tests.impls import Impl

MakeMail = Callable[..., Mail]


@pytest.fixture
def make_mail(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> MakeMail:
    """``Mail`` parsing through ``impl``'s ``parse_header_block`` (both twins run every test)."""
    monkeypatch.setattr(smtpx.mail, "parse_header_block", impl.parse_header_block)
    return Mail
