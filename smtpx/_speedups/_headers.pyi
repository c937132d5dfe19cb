# Stub of the compiled twin of smtpx/_headers_py.py (checked by stubtest; no cdef classes here).
__all__ = ["parse_header_block"]

def parse_header_block(data: bytes) -> tuple[list[tuple[bytes, bytes]], int]: ...
