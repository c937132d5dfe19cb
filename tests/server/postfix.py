"""A private Postfix instance for tests: its own config, queue and data directories, no service.

Debian's ``postfix`` package (installed by .ci/install-peers with services kept from starting)
provides the programs; everything the instance uses lives under one temporary directory. The
master is started with ``postfix -c DIR start`` and stopped with ``postfix -c DIR stop`` (as
root, which the master needs to drop to ``mail_owner``). Mail is injected through the
instance's smtpd on a loopback port; ``maillog_file`` (Postfix >= 3.4, via postlogd) records
each delivery attempt.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

MASTER_CF = """\
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
virtual   unix  -       n       n       -       -       virtual
"""


class PrivatePostfix:
    """One Postfix instance under ``root``, delivering everything to ``transport``.

    Args:
        transport: The default transport, e.g. ``lmtp:inet:127.0.0.1:2525``.
        smtpd_port: The loopback port of its smtpd (where tests inject mail).
    """

    def __init__(self, transport: str, smtpd_port: int) -> None:
        assert os.path.exists(POSTFIX), (
            "Postfix is not installed: run .ci/install-peers (apt-get install postfix)"
        )
        assert os.geteuid() == 0, "a private Postfix master must be started as root"
        # Not pytest's tmp_path: its parents are mode 0700 and the postfix user, which runs
        # the lmtp client, must reach a Unix socket under this directory.
        self.root = Path(tempfile.mkdtemp(prefix="smtpx-postfix-"))
        self.root.chmod(0o755)
        self.config = self.root / "etc"
        self.queue = self.root / "spool"
        self.data = self.root / "data"
        self.log = self.root / "maillog"
        for d in (self.config, self.queue, self.data):
            d.mkdir()
        owner = pwd.getpwnam("postfix")
        os.chown(self.data, owner.pw_uid, owner.pw_gid)  # the master's lock file lives here
        self.smtpd_port = smtpd_port
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "pf.test",
            "mydomain": "pf.test",
            "myorigin": "pf.test",
            "mydestination": "",
            "relay_domains": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "default_transport": transport,
            "relay_transport": transport,
            "local_transport": "error:no local delivery",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(self.root),
            "smtputf8_enable": "no",
            "biff": "no",
            "disable_dns_lookups": "yes",
            "smtp_dns_support_level": "disabled",
            "lmtp_host_lookup": "native",
            "queue_run_delay": "3600s",
            "minimal_backoff_time": "3600s",
            "maximal_backoff_time": "3600s",
        }
        self._main = main
        self._write_main()
        master = MASTER_CF.replace("1000?", "1000").replace(
            "smtp      inet", f"127.0.0.1:{smtpd_port} inet", 1
        )
        (self.config / "master.cf").write_text(master)

    def _write_main(self) -> None:
        text = "".join(f"{k} = {v}\n" for k, v in self._main.items())
        (self.config / "main.cf").write_text(text)

    def set_transport(self, transport: str) -> None:
        """Point the default transport elsewhere (before ``start``)."""
        self._main["default_transport"] = self._main["relay_transport"] = transport
        self._write_main()

    def deliver_to_maildirs(self, domain: str, users: list[str]) -> None:
        """Take mail for ``users`` (local parts) of ``domain`` into Maildirs (before ``start``).

        Postfix's ``virtual`` delivery agent writes each to ``<root>/vmail/<domain>/<user>/``
        as ``nobody``; other recipients of ``domain`` are refused at RCPT (550 5.1.1).
        """
        nobody = pwd.getpwnam("nobody")
        self.vmail = self.root / "vmail"
        self.vmail.mkdir()
        os.chown(self.vmail, nobody.pw_uid, nobody.pw_gid)
        table = self.config / "vmailbox"
        table.write_text("".join(f"{u}@{domain} {domain}/{u}/\n" for u in users))
        self._main.update(
            {
                "virtual_mailbox_domains": domain,
                "virtual_mailbox_base": str(self.vmail),
                # texthash: read as it is, no postmap needed.
                "virtual_mailbox_maps": f"texthash:{table}",
                "virtual_uid_maps": f"static:{nobody.pw_uid}",
                "virtual_gid_maps": f"static:{nobody.pw_gid}",
                "virtual_transport": "virtual",
                "smtpd_recipient_restrictions": "permit_mynetworks, reject",
            }
        )
        self._write_main()

    def maildir(self, address: str) -> list[bytes]:
        """The messages the ``virtual`` agent delivered to ``address`` (new/ and cur/)."""
        user, domain = address.split("@")
        box = self.vmail / domain / user
        return [f.read_bytes() for f in sorted([*box.glob("new/*"), *box.glob("cur/*")])]

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self) -> None:
        """Start the master; wait until its smtpd answers."""
        result = self._postfix("start")
        if result.returncode != 0:
            raise RuntimeError(
                f"postfix start failed: {result.stdout}{result.stderr}\n{self.log_text()}"
            )

    def stop(self) -> None:
        """Stop the master (all its processes) and delete the instance."""
        try:
            pid_file = self.queue / "pid" / "master.pid"
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = 0
            self._postfix("stop")
            # The master leaves its pid file behind: wait for the process itself to end.
            end = time.monotonic() + 20
            while pid and Path(f"/proc/{pid}").exists() and time.monotonic() < end:
                time.sleep(0.1)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def outcomes(self, recipients: list[str], timeout: float = 60.0) -> dict[str, str]:
        """Wait for a ``status=`` log line for each recipient; map it to that line."""
        end = time.monotonic() + timeout
        while True:
            found: dict[str, str] = {}
            for line in self.log_text().splitlines():
                m = re.search(r"to=<([^>]+)>.*status=", line)
                if m and m.group(1) in recipients:
                    found.setdefault(m.group(1), line)
            if len(found) == len(recipients) or time.monotonic() > end:
                return found
            time.sleep(0.2)
