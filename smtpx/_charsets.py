"""Charset labels (RFC 2047 words, MIME ``charset=`` parameters) mapped onto Python codecs.

The set is the Go package's (``envelope/charsets.go``, built on golang.org/x/text) plus its
aliases, so smtpx decodes exactly the charsets the Go package decodes. A label outside the
set is *unknown*: callers decide what that means (headers decode the bytes as UTF-8 with
U+FFFD replacements; ``Content.decode()`` returns the bytes unchanged, as Go does).

Any spelling that Python's codec registry resolves to one of the codecs below is accepted
too (``utf8``, ``latin-1``, ``iso_8859_15``...), but a label that resolves to some other
codec (``rot13``, ``zlib``, ``utf-7``...) stays unknown: a mail header must not pick a
bytes-to-bytes transform or a codec outside the list.
"""

from __future__ import annotations

import codecs
from encodings import normalize_encoding
from encodings.aliases import aliases as _PY_ALIASES

__all__ = ["MAX_LABEL_LENGTH", "decode_text", "lookup_codec"]

# Label (lowercase) -> Python codec name. Go's table, section 4.3 of the reference.
_CODECS: dict[str, str] = {
    "utf-8": "utf-8",
    "utf-16be": "utf-16-be",  # x/text IgnoreBOM: a BOM decodes to U+FEFF, as in Python
    "utf-16le": "utf-16-le",
    "utf-16": "x-smtpx-utf-16",  # little-endian unless a BOM says otherwise (see decode_text)
    "windows-874": "cp874",
    "ibm437": "cp437",
    "ibm850": "cp850",
    "ibm852": "cp852",
    "ibm855": "cp855",
    "ibm858": "cp858",
    "ibm866": "cp866",
    "koi8r": "koi8_r",
    "koi8u": "koi8_u",
    "macintosh": "mac_roman",
    # x/text's ShiftJIS is close to CP932 (NEC and IBM extensions), a superset of JIS X 0208.
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "euc-jp": "euc_jp",
    "eucjp": "euc_jp",
    "iso-2022-jp": "iso2022_jp",
    "iso2022jp": "iso2022_jp",
    # x/text's EUCKR is "EUC-KR (which is also CP949)": the Unified Hangul Code superset.
    "euc-kr": "cp949",
    "euckr": "cp949",
    # Go maps gb2312 to GB18030, its superset; so do we.
    "gb2312": "gb18030",
    "gbk": "gbk",
    "gb18030": "gb18030",
    # x/text's Big5 includes the HKSCS extensions.
    "big5": "big5hkscs",
    "big-5": "big5hkscs",
}
for _n in (*range(1, 11), 13, 14, 15, 16):
    _CODECS[f"iso-8859-{_n}"] = f"iso8859_{_n}"
for _n in range(1250, 1259):
    _CODECS[f"windows-{_n}"] = f"cp{_n}"

_ALIASES: dict[str, str] = {
    # Only reached from body decoding: the header decoder handles us-ascii itself (Go does).
    "ascii": "iso-8859-1",
    "us-ascii": "iso-8859-1",
    "latin1": "iso-8859-1",
    "latin2": "iso-8859-2",
    "latin3": "iso-8859-3",
    "latin4": "iso-8859-4",
    "latin5": "iso-8859-9",
    "latin6": "iso-8859-10",
    "latin7": "iso-8859-13",
    "latin8": "iso-8859-14",
    "latin9": "iso-8859-15",
    "latin10": "iso-8859-16",
    "cp874": "windows-874",
    "ms874": "windows-874",
    "tis-620": "windows-874",
    "ms-ansi": "windows-1252",
    "ms_kanji": "shift-jis",
    "csshiftjis": "shift-jis",
    "x-sjis": "shift-jis",
    "ms932": "shift-jis",
    "5601": "euc-kr",
    "ks_c_5601": "euc-kr",
    "ansi936": "gb2312",
    "cp936": "gbk",
    "ms936": "gbk",
    "ansi950": "big5",
    "cp950": "big5",
    "koi8-r": "koi8r",
    "koi8-u": "koi8u",
}
for _n in range(1250, 1259):
    _ALIASES[f"cp{_n}"] = f"windows-{_n}"

# Longest label accepted: the longest IANA charset name is 45 characters
# ("Extended_UNIX_Code_Packed_Format_for_Japanese"); nothing in the table comes close.
MAX_LABEL_LENGTH = 40
_LABEL_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.:+ ")


def _module(name: str) -> str:
    # The encodings module Python's registry would pick for ``name`` (without importing it).
    norm = normalize_encoding(name.lower())
    return _PY_ALIASES.get(norm) or _PY_ALIASES.get(norm.replace(".", "_")) or norm


# Other spellings of the codecs in the table, from Python's alias list, computed once here so
# that no label from a message ever reaches codecs.lookup(): its search function caches every
# miss for the life of the process (encodings._cache), so distinct bogus labels grow memory.
_BY_MODULE: dict[str, str] = {}
for _codec in _CODECS.values():
    if not _codec.startswith("x-"):
        _BY_MODULE.setdefault(_module(_codec), codecs.lookup(_codec).name)
_SPELLINGS: dict[str, str] = {
    alias: _BY_MODULE[module] for alias, module in _PY_ALIASES.items() if module in _BY_MODULE
}
_SPELLINGS.update(_BY_MODULE)


def lookup_codec(label: str) -> str | None:
    """The Python codec for a charset label, or None when the label is unknown.

    Only table lookups: a label longer than :data:`MAX_LABEL_LENGTH` or holding anything but
    ASCII letters, digits, ``-_.:+`` and spaces is unknown at once, and no label ever reaches
    ``codecs.lookup`` (which would remember each miss forever).

    Args:
        label: A charset name as it appears in mail (any case, surrounding space ignored).

    Returns:
        A codec name for ``bytes.decode`` (or the internal ``"x-smtpx-utf-16"``), or None.
    """
    if len(label) > MAX_LABEL_LENGTH + 8:  # room for surrounding space
        return None
    key = label.strip().lower()
    if not key or len(key) > MAX_LABEL_LENGTH or not _LABEL_OK.issuperset(key):
        return None
    found = _CODECS.get(key)
    if found is not None:
        return found
    alias = _ALIASES.get(key)
    if alias is not None:
        return _CODECS[alias]
    # Another spelling of a codec in the table (utf8, latin-1, iso_8859_15...), nothing else.
    norm = normalize_encoding(key)
    return _SPELLINGS.get(norm) or _SPELLINGS.get(norm.replace(".", "_"))


def decode_text(data: bytes, codec: str) -> str:
    """Decode ``data`` with a codec from :func:`lookup_codec`; bad bytes become U+FFFD."""
    if codec == "x-smtpx-utf-16":
        # Go's x/text UTF16(LittleEndian, UseBOM): a leading BOM picks the order and is dropped.
        if data[:2] == codecs.BOM_UTF16_BE:
            return data[2:].decode("utf-16-be", "replace")
        if data[:2] == codecs.BOM_UTF16_LE:
            data = data[2:]
        return data.decode("utf-16-le", "replace")
    return data.decode(codec, "replace")
