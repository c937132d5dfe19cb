# Only the dkimpy surface smtpx.authres.dkim calls (STYLE.md 2.5); checked by
# `python -m mypy.stubtest dkim --ignore-missing-stub --mypy-config-file pyproject.toml`.
import logging
from collections.abc import Callable, Sequence
from typing import Any

class DKIMException(Exception): ...
class MessageFormatError(DKIMException): ...

class CanonicalizationPolicy:
    def __init__(self, header_algorithm: object, body_algorithm: object) -> None: ...
    @classmethod
    def from_c_value(cls, c: bytes | None) -> CanonicalizationPolicy: ...
    def canonicalize_body(self, body: bytes) -> bytes: ...
    def to_c_value(self) -> bytes: ...

def parse_pem_private_key(data: bytes) -> dict[str, int]: ...
def verify(
    message: bytes,
    logger: logging.Logger | None = None,
    dnsfunc: Callable[..., bytes | str | None] = ...,
    minkey: int = 1024,
    timeout: int = 5,
    tlsrpt: bool | str = False,
) -> bool: ...

class DomainSigner:
    headers: list[list[bytes]]
    body: bytes
    minkey: int
    hasher: Callable[[], Any]
    def __init__(
        self,
        message: bytes | None = None,
        logger: logging.Logger | None = None,
        signature_algorithm: bytes = b"rsa-sha256",
        minkey: int = 1024,
        linesep: bytes = b"\r\n",
        debug_content: bool = False,
        timeout: int = 5,
        tlsrpt: bool | str = False,
    ) -> None: ...
    def default_sign_headers(self) -> list[bytes]: ...
    def gen_header(
        self,
        fields: list[tuple[bytes, bytes]],
        include_headers: tuple[bytes, ...],
        canon_policy: CanonicalizationPolicy,
        header_name: bytes,
        pk: object,
        standardize: bool = False,
    ) -> bytes: ...

class DKIM(DomainSigner):
    def sign(
        self,
        selector: bytes,
        domain: bytes,
        privkey: bytes,
        signature_algorithm: bytes | None = None,
        identity: bytes | None = None,
        canonicalize: tuple[bytes, bytes] = ...,
        include_headers: Sequence[bytes] | None = None,
        length: bool = False,
    ) -> bytes: ...
