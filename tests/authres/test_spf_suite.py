"""The official RFC 7208 test suite (openspf.org, 2014.04 + 2019.08 additions), over real DNS.

Every scenario's zonedata is served by its own ``LoopbackDNSServer``; every case runs through
``smtpx.authres.spf`` with a real dnspython resolver pointed at that server, so the resolver path is
the production one (UDP, TCP fallback, timeouts). All scenarios run concurrently in one event loop
(once per session); each case is then one pytest item asserting its own result.

The suite is vendored beside this file, in ``tests/authres/data/spf/`` (licence and source in its
README); nothing outside the repository is read.

Zone translation (the suite's conventions, as its header describes):

* ``SPF`` entries are served as type SPF and, unless the name has its own ``TXT`` entries, also as
  TXT (RFC 7208 dropped the SPF RR type; the suite still labels records that way);
* ``TXT: NONE`` means "no TXT record here, do not copy the SPF ones";
* ``TIMEOUT`` makes every query for a type the name has no record of go unanswered (so
  ``spftimeout``: TXT answers, type SPF times out); our resolver gives up after ``TIMEOUT_S``;
* strings are bytes as written: code points below 256 are sent as that byte (``"\\xEF\\xBB\\xBF"``
  in the YAML is the UTF-8 BOM), anything else as UTF-8;
* a TXT/SPF entry with *no* strings (``SPF: []``, case ``null-text``) cannot be put on the wire by
  dnspython, nor parsed by it (RFC 1035 3.3.14 requires at least one string), so it is left out.
  The case still checks what it is about: the multi-string record next to it must be glued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from smtpx.authres import spf
from tests.authres.dnsserver import SUPPORTED_TYPES, LoopbackDNSServer

REPO = Path(__file__).resolve().parents[2]
SUITE_DIR = Path(__file__).resolve().parent / "data" / "spf"
SUITE = SUITE_DIR / "rfc7208-tests.yml"
TIMEOUT_S = 1.5  # generous: every scenario shares one loop on a loaded machine

# Cases known to fail, with the reason. Asserted (strict xfail): one that starts passing fails
# the run, so the list cannot go stale. Not counted as passes.
EXPECTED_FAILURES: dict[str, str] = {}

# Cases whose result is right and whose explanation differs from the suite's only in letter case.
# Asserted both ways (equal ignoring case, different exactly) so the list cannot go stale.
EXPLANATION_CASE_DIFFERENCES: dict[str, str] = {
    "macro-expansion-rules/v-macro-ip6": (
        "the suite wants %{i} of CAFE:BABE::1 as upper-case nibbles (copied from how the host "
        "was written); we expand it in lower case, as RFC 7208 7.3's own example does "
        "(2001:db8::cb01 -> ...8.b.d.0.1.0.0.2), which DNS treats the same"
    ),
}


@dataclass(frozen=True)
class Case:
    scenario: str
    name: str
    helo: str
    host: str
    mailfrom: str
    results: tuple[str, ...]
    explanation: str | None

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.name}"


@dataclass(frozen=True)
class Scenario:
    description: str
    zone: dict[str, list[tuple[str, str]]]
    timeout_rrsets: list[tuple[str, str]]
    cases: list[Case]


def _slug(text: str) -> str:
    return "-".join(text.lower().split())


def _wire_bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _quoted(text: str) -> str:
    """One character-string in zone-file presentation format (RFC 1035 5.1)."""
    out = []
    for byte in _wire_bytes(text):
        if 0x20 <= byte < 0x7F and byte not in (0x22, 0x5C):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _txt_rdata(value: Any) -> str | None:
    strings = value if isinstance(value, list) else [value]
    if not strings:
        return None  # zero strings: see the module docstring (null-text)
    return " ".join(_quoted(str(s)) for s in strings)


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _translate_zone(
    zonedata: Mapping[str, Sequence[Any]],
) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str]]]:
    zone: dict[str, list[tuple[str, str]]] = {}
    timeouts: list[tuple[str, str]] = []
    for owner, entries in zonedata.items():
        records: list[tuple[str, str]] = []
        spf_texts: list[str] = []
        has_txt = False
        timeout = False
        for entry in entries:
            if entry == "TIMEOUT":
                timeout = True
                continue
            ((rtype, value),) = entry.items()
            if rtype in ("SPF", "TXT"):
                if rtype == "TXT":
                    has_txt = True
                if value == "NONE":
                    continue
                rdata = _txt_rdata(value)
                if rdata is None:
                    continue
                records.append((rtype, rdata))
                if rtype == "SPF":
                    spf_texts.append(rdata)
            elif rtype == "MX":
                preference, exchange = value
                records.append(("MX", f"{preference} {_absolute(exchange) if exchange else '.'}"))
            elif rtype in ("PTR", "CNAME"):
                records.append((rtype, _absolute(value)))
            else:
                records.append((rtype, str(value)))
        if not has_txt:
            records.extend(("TXT", text) for text in spf_texts)
        if timeout:
            present = {rtype for rtype, _ in records}
            timeouts.extend((owner, rtype) for rtype in sorted(SUPPORTED_TYPES - present))
        if records:
            zone[owner] = records
    return zone, timeouts


def _load_suite() -> list[Scenario]:
    if not SUITE.is_file():
        pytest.fail(
            f"RFC 7208 test suite not found at {SUITE}: it is vendored in the repository "
            "(tests/authres/data/spf/); is the clone complete?",
            pytrace=False,
        )
    scenarios = []
    with SUITE.open(encoding="utf-8") as stream:
        for doc in yaml.safe_load_all(stream):
            description = str(doc["description"])
            zone, timeouts = _translate_zone(doc.get("zonedata") or {})
            cases = []
            for name, test in doc["tests"].items():
                result = test["result"]
                cases.append(
                    Case(
                        scenario=_slug(description),
                        name=str(name),
                        helo=str(test.get("helo", "")),
                        host=str(test["host"]),
                        mailfrom=str(test.get("mailfrom", "")),
                        results=tuple(result) if isinstance(result, list) else (result,),
                        explanation=test.get("explanation"),
                    )
                )
            scenarios.append(Scenario(description, zone, timeouts, cases))
    return scenarios


SCENARIOS = _load_suite()
CASES = [case for scenario in SCENARIOS for case in scenario.cases]


async def _run_scenario(scenario: Scenario) -> dict[str, spf.SPFResult]:
    with LoopbackDNSServer(scenario.zone, timeout_rrsets=scenario.timeout_rrsets) as server:
        resolver = server.resolver(timeout=TIMEOUT_S)
        outcomes = {}
        for case in scenario.cases:
            # The driver's identity choice follows RFC 7208 2.4: a null MAIL FROM means the HELO
            # identity (postmaster@helo); otherwise the MAIL FROM identity.
            outcomes[case.id] = await spf.check(case.host, case.helo, case.mailfrom, resolver)
        return outcomes


async def _run_all() -> dict[str, spf.SPFResult]:
    results: dict[str, spf.SPFResult] = {}
    for outcome in await asyncio.gather(*(_run_scenario(s) for s in SCENARIOS)):
        results.update(outcome)
    return results


@pytest.fixture(scope="module")
def suite_results() -> dict[str, spf.SPFResult]:
    return asyncio.run(_run_all())


def _params() -> Iterator[Any]:
    for case in CASES:
        marks = []
        reason = EXPECTED_FAILURES.get(case.id)
        if reason is not None:
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        yield pytest.param(case, id=case.id, marks=marks)


def test_suite_is_complete() -> None:
    # The 2014.04 suite plus the 2019.08 syntax cases; a truncated file must not pass quietly.
    assert len(SCENARIOS) == 16
    assert len(CASES) == 203
    assert len({case.id for case in CASES}) == len(CASES)
    assert set(EXPECTED_FAILURES) <= {case.id for case in CASES}


def test_suite_is_vendored_with_its_licence() -> None:
    # A fresh clone is the whole set-up (issue 15): the data and its notice live in the repo.
    assert SUITE.resolve().is_relative_to(REPO)
    licence = (SUITE_DIR / "rfc7208-tests.LICENSE").read_text(encoding="utf-8")
    assert "Stuart D Gathman" in licence and "Redistribution and use" in licence
    assert "rfc7208-tests.yml" in (SUITE_DIR / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", list(_params()))
def test_rfc7208_case(case: Case, suite_results: dict[str, spf.SPFResult]) -> None:
    outcome = suite_results[case.id]
    assert outcome.result in case.results, (
        f"{case.id}: got {outcome.result} ({outcome.reason}), want one of {case.results}"
    )
    if case.explanation == "DEFAULT":
        assert outcome.explanation == ""  # no exp=, or one RFC 7208 6.2 says to ignore
    elif case.id in EXPLANATION_CASE_DIFFERENCES:
        assert outcome.explanation.lower() == str(case.explanation).lower()
        assert outcome.explanation != case.explanation
    elif case.explanation is not None:
        assert outcome.explanation == case.explanation
