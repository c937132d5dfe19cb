"""A small authoritative DNS server on loopback, for tests.

``LoopbackDNSServer`` answers real UDP and TCP queries on ``127.0.0.1`` (one free port shared by
both transports) from background threads, using dnspython's message API. Every authres test that
needs DNS points a real ``dns.asyncresolver.Resolver`` at it, so the resolver path under test is the
one production uses: no mock of dnspython anywhere.

Example::

    zone = {"example.com": [("TXT", '"v=spf1 -all"'), ("A", "192.0.2.1")]}
    with LoopbackDNSServer(zone, timeout_names=["slow.example.com"]) as server:
        resolver = server.resolver(timeout=0.3)
        ...

Zone semantics (enough for SPF, DKIM and DMARC tests):

* owner names are case-insensitive and may be given with or without the trailing dot;
* rdata is in presentation format (RFC 1035 5.1, RFC 3597 generic syntax accepted), with relative
  names taken relative to the root;
* a name not in the zone gives NXDOMAIN; an existing name without the asked type gives NOERROR with
  an empty answer (NODATA); a name holding a CNAME is chased inside the zone (RFC 1034 4.3.2), and
  the rcode is the one of the last name in the chain (RFC 6604);
* names in ``timeout_names`` are never answered, nor are the (name, rtype) pairs in
  ``timeout_rrsets`` (a server that answers some types and drops others); names in
  ``servfail_names`` get SERVFAIL;
* an answer larger than the client's UDP payload (512 bytes without EDNS, RFC 1035 4.2.1;
  otherwise the EDNS payload size, RFC 6891 6.2.3) is sent empty with TC set, so the client
  retries over TCP (RFC 7766).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME

__all__ = ["SUPPORTED_TYPES", "DNSServerFactory", "LoopbackDNSServer", "Zone"]

Zone = Mapping[str, Sequence[tuple[str, str]]]
"""Owner name -> (rtype, rdata in presentation format) pairs."""

SUPPORTED_TYPES = frozenset({"A", "AAAA", "TXT", "MX", "PTR", "CNAME", "SPF", "NS"})

# A CNAME chain longer than this inside the zone is answered as far as it went (a loop guard).
_MAX_CNAME_CHAIN = 16
_UDP_MIN_PAYLOAD = 512


class _CompiledZone:
    """The zone as dnspython objects: owner name -> rdtype -> rdataset."""

    def __init__(self, zone: Zone) -> None:
        self.records: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rdataset.Rdataset]] = {}
        for owner, entries in zone.items():
            name = dns.name.from_text(owner)
            by_type = self.records.setdefault(name, {})
            for rtype, text in entries:
                if rtype.upper() not in SUPPORTED_TYPES:
                    raise ValueError(f"unsupported record type {rtype!r} for {owner!r}")
                rdtype = dns.rdatatype.from_text(rtype)
                rdata = dns.rdata.from_text(
                    dns.rdataclass.IN, rdtype, text, dns.name.root, relativize=False
                )
                rdataset = by_type.get(rdtype)
                if rdataset is None:
                    rdataset = dns.rdataset.Rdataset(dns.rdataclass.IN, rdtype)
                    rdataset.update_ttl(300)
                    by_type[rdtype] = rdataset
                rdataset.add(rdata)


class LoopbackDNSServer:
    """An authoritative DNS server for tests, on 127.0.0.1, UDP and TCP, one free port.

    Use it as a context manager (``start()``/``stop()`` also work). It serves from threads, so it
    works the same under any event loop, and it can be shared by several loops in one test.

    Attributes:
        host: The address it listens on (``127.0.0.1``).
        port: The port, for both UDP and TCP; 0 until started.
        queries: Every (qname, rdtype text, transport) it received, in order; tests may assert on
            it (for instance that TCP was used after truncation).
    """

    def __init__(
        self,
        zone: Zone = {},  # noqa: B006 (read-only Mapping, never mutated)
        *,
        timeout_names: Collection[str] = (),
        servfail_names: Collection[str] = (),
        timeout_rrsets: Collection[tuple[str, str]] = (),
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.queries: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._zone = _CompiledZone(zone)
        self._timeout_names = {dns.name.from_text(n) for n in timeout_names}
        self._servfail_names = {dns.name.from_text(n) for n in servfail_names}
        self._timeout_rrsets = _rrset_keys(timeout_rrsets)
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._stop_r: socket.socket | None = None
        self._stop_w: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._tcp_conns: set[socket.socket] = set()
        self._running = False

    # -- configuration -------------------------------------------------------------------

    def set_zone(
        self,
        zone: Zone,
        *,
        timeout_names: Collection[str] | None = None,
        servfail_names: Collection[str] | None = None,
        timeout_rrsets: Collection[tuple[str, str]] | None = None,
    ) -> None:
        """Replace the served records (and optionally the timeout/servfail names) while running."""
        compiled = _CompiledZone(zone)
        with self._lock:
            self._zone = compiled
            if timeout_names is not None:
                self._timeout_names = {dns.name.from_text(n) for n in timeout_names}
            if servfail_names is not None:
                self._servfail_names = {dns.name.from_text(n) for n in servfail_names}
            if timeout_rrsets is not None:
                self._timeout_rrsets = _rrset_keys(timeout_rrsets)

    def resolver(self, timeout: float = 2.0) -> dns.asyncresolver.Resolver:
        """An async resolver that asks only this server, giving up after ``timeout`` seconds."""
        if not self.port:
            raise RuntimeError("LoopbackDNSServer is not started")
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [self.host]
        resolver.port = self.port
        resolver.timeout = timeout
        resolver.lifetime = timeout
        return resolver

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Bind a free port for UDP and TCP and start serving."""
        if self._running:
            return
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:
                # The TCP side of this port is taken; try another UDP port.
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            break
        else:
            raise OSError("no free port with both UDP and TCP available")
        udp.setblocking(False)
        tcp.setblocking(False)
        self._stop_r, self._stop_w = socket.socketpair()
        self._udp, self._tcp, self.port = udp, tcp, port
        self._running = True
        thread = threading.Thread(target=self._serve, name=f"loopback-dns-{port}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        """Stop serving and close every socket; waits for the threads."""
        if not self._running:
            return
        self._running = False
        assert self._stop_w is not None
        self._stop_w.send(b"x")
        with self._lock:
            conns = list(self._tcp_conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        for sock in (self._udp, self._tcp, self._stop_r, self._stop_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._stop_r = self._stop_w = None
        self.port = 0

    def __enter__(self) -> LoopbackDNSServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._udp is not None
        assert self._tcp is not None
        assert self._stop_r is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._udp, selectors.EVENT_READ, "udp")
            sel.register(self._tcp, selectors.EVENT_READ, "tcp")
            sel.register(self._stop_r, selectors.EVENT_READ, "stop")
            while self._running:
                for key, _ in sel.select():
                    if key.data == "stop":
                        return
                    if key.data == "udp":
                        self._on_udp()
                    else:
                        self._on_accept()

    def _on_udp(self) -> None:
        assert self._udp is not None
        try:
            wire, peer = self._udp.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # ICMP port unreachable from an earlier reply surfaces here on some systems.
            return
        reply = self._handle_safely(wire, "udp")
        if reply is not None:
            with contextlib.suppress(OSError):
                self._udp.sendto(reply, peer)

    def _on_accept(self) -> None:
        assert self._tcp is not None
        try:
            conn, _ = self._tcp.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(True)
        with self._lock:
            self._tcp_conns.add(conn)
        thread = threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve_tcp(self, conn: socket.socket) -> None:
        # RFC 1035 4.2.2 / RFC 7766 8: each message is preceded by a two-byte length.
        try:
            while self._running:
                header = _recv_exact(conn, 2)
                if header is None:
                    return
                (length,) = struct.unpack("!H", header)
                wire = _recv_exact(conn, length)
                if wire is None:
                    return
                reply = self._handle_safely(wire, "tcp")
                if reply is not None:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            return
        finally:
            with self._lock:
                self._tcp_conns.discard(conn)
            conn.close()

    def _handle_safely(self, wire: bytes, transport: str) -> bytes | None:
        try:
            return self._handle(wire, transport)
        except Exception:
            # A bug here must show up as a failed lookup in the test, not kill the server thread.
            try:
                query = dns.message.from_wire(wire)
                response = dns.message.make_response(query)
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            except Exception:
                return None

    def _handle(self, wire: bytes, transport: str) -> bytes | None:
        """Build the reply to one query, or None to stay silent (timeouts, garbage)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return None
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        with self._lock:
            self.queries.append((qname.to_text(), dns.rdatatype.to_text(qtype), transport))
            zone = self._zone
            timeout_names = self._timeout_names
            servfail_names = self._servfail_names
            timeout_rrsets = self._timeout_rrsets
        if qname in timeout_names or (qname, qtype) in timeout_rrsets:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        if qname in servfail_names:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        rcode = self._answer(zone, qname, qtype, response)
        response.set_rcode(rcode)
        if transport == "tcp":
            return response.to_wire()
        limit = max(query.payload, _UDP_MIN_PAYLOAD) if query.edns >= 0 else _UDP_MIN_PAYLOAD
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # RFC 2181 9: a truncated reply; the client must retry over TCP.
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            truncated.set_rcode(rcode)
            return truncated.to_wire()

    @staticmethod
    def _answer(
        zone: _CompiledZone,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        response: dns.message.Message,
    ) -> dns.rcode.Rcode:
        name = qname
        for _ in range(_MAX_CNAME_CHAIN):
            by_type = zone.records.get(name)
            if by_type is None:
                return dns.rcode.NXDOMAIN
            if qtype == dns.rdatatype.ANY:
                for rdataset in by_type.values():
                    response.answer.append(_rrset(name, rdataset))
                return dns.rcode.NOERROR
            found = by_type.get(qtype)
            if found is not None:
                response.answer.append(_rrset(name, found))
                return dns.rcode.NOERROR
            cname = by_type.get(dns.rdatatype.CNAME)
            if cname is None:
                return dns.rcode.NOERROR  # NODATA
            response.answer.append(_rrset(name, cname))
            name = next(rd.target for rd in cname if isinstance(rd, CNAME))
        return dns.rcode.NOERROR


def _rrset_keys(
    pairs: Collection[tuple[str, str]],
) -> set[tuple[dns.name.Name, dns.rdatatype.RdataType]]:
    return {(dns.name.from_text(name), dns.rdatatype.from_text(rtype)) for name, rtype in pairs}


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


class DNSServerFactory(Protocol):
    """The type of the ``dns_server`` fixture (tests/authres/conftest.py): start a server."""

    def __call__(
        self,
        zone: Zone = ...,
        *,
        timeout_names: Collection[str] = ...,
        servfail_names: Collection[str] = ...,
        timeout_rrsets: Collection[tuple[str, str]] = ...,
    ) -> LoopbackDNSServer: ...


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)
