"""The docs work verbatim: every Python example of README.md and docs/*.md runs here.

Every block runs in a folder holding what a deployment has at hand, under the names the docs
use: ``fullchain.pem`` and ``privkey.pem`` (a certificate for 127.0.0.1 and localhost, Let's
Encrypt's names) and ``users`` (an auth file, as ``smtpx passwd`` writes it, with the one user
``alice``, password ``s3cret``).

A block that serves until a signal (``listen_and_serve()``, or a wait for SIGINT) is run as a
script with its ports moved to free loopback ports: each port gets an SMTP session (a message
where the port is plaintext, STARTTLS where offered, a TLS handshake on an implicit-TLS port,
AUTH as alice where offered), then SIGINT, after which the script must exit 0 without a
traceback. A block that defines pytest tests (``def test_...``) is run by pytest with the smtpx
plugin, and every test it defines must pass. Every other block must run to completion.
``$ smtpx ...`` lines in ``text`` blocks are run and their output compared; command lines
continued with a backslash are joined before they are checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import smtpx
from smtpx.auth import MIN_SCRYPT_LN, hash_password

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Run the smtpx these tests imported (the installed wheel under tox, the tree otherwise).
ENV = {**os.environ, "PYTHONPATH": str(Path(smtpx.__file__).resolve().parents[1])}
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
ADDR = re.compile(r'addr="([^"]*):(\d+)"')


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(lang: str) -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == lang:
                line = text.count("\n", 0, match.start()) + 1
                found.append(Block(path, line, lang, match.group(2)))
    return found


EXAMPLE = ROOT / "examples" / "server.py"
PYTHON = [*blocks("python"), Block(EXAMPLE, 1, "python", EXAMPLE.read_text())]


def test_the_docs_have_examples() -> None:
    # A changed fence syntax must not turn this file into a silent no-op.
    assert len(PYTHON) >= 5
    assert {b.path.name for b in PYTHON} >= {
        "README.md",
        "deployment.md",
        "handlers.md",
        "hooks-and-auth.md",
    }


SUBMISSION = ROOT / "examples" / "submission.py"


def test_readme_shows_the_submission_example() -> None:
    # The README says its submission server "is examples/submission.py, complete".
    readme = [b.code for b in blocks("python") if b.path.name == "README.md"]
    assert SUBMISSION.read_text() in readme


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serves_until_signal(code: str) -> bool:
    return "listen_and_serve()" in code or "add_signal_handler" in code


PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
PYTEST_TEST = re.compile(r"^(?:async )?def (test_\w+)\(", re.MULTILINE)

# The user in every example's ``users`` file (the docs show `echo 's3cret' | smtpx passwd alice`).
DOCS_USER, DOCS_PASSWORD = "alice", "s3cret"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def users_line() -> str:
    # The cheapest scrypt cost a file may hold: the examples check it once per AUTH.
    return f"{DOCS_USER}:{hash_password(DOCS_PASSWORD, ln=MIN_SCRYPT_LN)}\n"


def write_example_files(ca: trustme.CA, users_line: str, folder: Path) -> None:
    # The names the deployment page uses (Let's Encrypt's).
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "fullchain.pem"))
    cert.private_key_pem.write_to_path(str(folder / "privkey.pem"))
    (folder / "users").write_text(users_line)


def session(port: int, implicit_tls: bool, ctx: ssl.SSLContext) -> None:
    message = "Subject: docs\r\nFrom: a@example.com\r\n\r\nfrom tests/test_docs.py\r\n"
    client: smtplib.SMTP
    if implicit_tls:
        client = smtplib.SMTP_SSL("127.0.0.1", port, timeout=10, context=ctx)
    else:
        client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    with client:
        client.ehlo("docs.test")
        if client.has_extn("starttls"):
            client.starttls(context=ctx)
            client.ehlo("docs.test")
        if client.has_extn("auth"):
            client.login(DOCS_USER, DOCS_PASSWORD)
        refused = client.sendmail("a@example.com", ["b@example.com"], message)
        assert refused == {}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_example_runs(block: Block, tmp_path: Path, ca: trustme.CA, users_line: str) -> None:
    compile(block.code, block.id, "exec")
    write_example_files(ca, users_line, tmp_path)
    if tests := PYTEST_TEST.findall(block.code):
        # A test example: pytest runs it with the smtpx plugin, loaded explicitly (so the same
        # way from a source tree and from an installed wheel, whose entry point is not used).
        (tmp_path / "test_example.py").write_text(block.code)
        done = subprocess.run(
            [*PYTEST, "-p", "smtpx.pytest_plugin", "test_example.py"],
            cwd=tmp_path,
            env={**ENV, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{len(tests)} passed" in done.stdout, done.stdout
        return
    if not serves_until_signal(block.code):
        # An example that builds a server shows how to run it and stop it, not just how to
        # construct it (deployment.md once built two servers and exited).
        if "Server(" in block.code:
            assert "shutdown(" in block.code, f"{block.id} builds a server and never runs it"
        script = tmp_path / "example.py"
        script.write_text(block.code)
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return

    ports: list[tuple[int, bool]] = []

    def move(match: re.Match[str]) -> str:
        port = free_port()
        line_end = block.code.find("\n", match.end())
        ports.append((port, "tls_always_on=True" in block.code[match.end() : line_end]))
        return f'addr="127.0.0.1:{port}"'

    code = ADDR.sub(move, block.code)
    assert ports, f"{block.id}: a server example without addr=..."
    (tmp_path / "example.py").write_text(code)
    proc = subprocess.Popen(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for port, _ in ports:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, f"{block.id}: nothing listens on {port}"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        for port, implicit_tls in ports:
            session(port, implicit_tls, client_ctx)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert err.count("listening on 127.0.0.1:") == len(ports), err  # logging is configured


COMMAND = re.compile(r"^\$ smtpx (.*)$")


def shell_examples() -> list[tuple[Block, str, str]]:
    """``$ smtpx ...`` lines of ``text`` blocks and the output shown below each."""
    found = []
    for block in blocks("text"):
        lines = block.code.splitlines()
        for i, line in enumerate(lines):
            if match := COMMAND.match(line):
                output = []
                for after in lines[i + 1 :]:
                    if after.startswith("$ "):
                        break
                    output.append(after)
                found.append((block, match.group(1), "\n".join(output).strip()))
    return found


SHELL = shell_examples()


@pytest.mark.parametrize(
    ("block", "args", "expected"), SHELL, ids=[f"{b.id} {a}" for b, a, _ in SHELL]
)
def test_command_example_prints_what_the_docs_show(
    block: Block, args: str, expected: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtpx", *args.split()],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.stdout + done.stderr).strip() == expected


PUBLIC_MODULES = [
    "smtpx",
    "smtpx.address",
    "smtpx.auth",
    "smtpx.authres",
    "smtpx.authres.dkim",
    "smtpx.authres.dmarc",
    "smtpx.authres.spf",
    "smtpx.cli",
    "smtpx.envelope",
    "smtpx.errors",
    "smtpx.handler",
    "smtpx.headers",
    "smtpx.hooks",
    "smtpx.mail",
    "smtpx.maildir",
    "smtpx.middleware",
    "smtpx.protocol",
    "smtpx.responses",
    "smtpx.server",
    "smtpx.testing",
]


def public_classes() -> list[type]:
    import importlib  # noqa: PLC0415

    found: dict[str, type] = {}
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if inspect.isclass(obj) and obj.__module__.startswith("smtpx"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def documented_attributes(cls: type) -> set[str]:
    """Names listed in the ``Attributes:`` sections of ``cls`` and its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        doc = inspect.getdoc(klass) or ""
        if "Attributes:" in doc:
            section = doc.split("Attributes:", 1)[1]
            names |= set(re.findall(r"^    (\w+):", section, re.MULTILINE))
    return names


def test_public_api_is_documented() -> None:
    # The API pages are generated from the docstrings: an attribute without a line there is
    # invisible (issue 15: Envelope's attributes and the authres result properties).
    missing = []
    for cls in public_classes():
        fields: set[str] = set()
        if dataclasses.is_dataclass(cls):
            fields |= {f.name for f in dataclasses.fields(cls)}
        for klass in cls.__mro__:
            fields |= set(getattr(klass, "__slots__", ()))
        fields = {f for f in fields if not f.startswith("_")}
        if cls.__module__.startswith("smtpx.protocol"):
            fields = set()  # NOTE: the sans-IO events document their fields in prose (for now)
        undocumented = fields - documented_attributes(cls)
        missing += [f"{cls.__module__}.{cls.__qualname__}.{f}" for f in sorted(undocumented)]
        for name, member in vars(cls).items():
            if name.startswith("_"):
                continue
            func = member.fget if isinstance(member, property) else member
            if isinstance(func, classmethod | staticmethod):
                func = func.__func__
            if inspect.isfunction(func) and not func.__doc__:
                missing.append(f"{cls.__module__}.{cls.__qualname__}.{name}()")
    assert missing == []


CLI_INLINE = re.compile(r"`(?:[^`]*&& )?smtpx ((?:serve(?=[\s`])|--)[^`]*)`")
CLI_BLOCK_LINE = re.compile(r"(?<![\w/.-])smtpx ((?:serve(?=\s|$)|--)[^\n]*)")
ANY_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*(:[A-Z]+)?$")  # N, PEM, HOST:PORT


def cli_uses() -> list[tuple[str, str]]:
    """Every ``smtpx serve ...`` / ``smtpx --...`` the docs show, without trailing prose."""
    found = []
    for path in DOCS:
        text = path.read_text()
        candidates = [m.group(1) for m in CLI_INLINE.finditer(text)]
        for block in ANY_FENCE.finditer(text):
            code = re.sub(r"[ \t]*\\\n\s*", " ", block.group(1))  # a command continued with "\"
            candidates += [m.group(1) for m in CLI_BLOCK_LINE.finditer(code)]
        for candidate in candidates:
            args = re.split(r"\s{2,}|\s\(|\s#", candidate.replace("\n", " "))[0].strip()
            tokens = args.split()
            if "[" in args or "..." in args or any(PLACEHOLDER.match(t) for t in tokens):
                continue  # a synopsis, not a command
            found.append((str(path.relative_to(ROOT)), args))
    return found


CLI_USES = cli_uses()


def test_docs_show_cli_commands() -> None:
    assert len(CLI_USES) >= 5


@pytest.mark.parametrize(("where", "args"), CLI_USES, ids=[f"{w}: {a}" for w, a in CLI_USES])
def test_cli_command_in_docs_parses(where: str, args: str) -> None:
    # deployment.md once showed `smtpx --proxy --workers 4`, which has no command.
    from smtpx.cli import build_parser  # noqa: PLC0415

    code: object = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(args.split())
    except SystemExit as exc:  # --help and --version exit 0, a mistake exits 2
        code = exc.code
    assert code == 0, f"{where}: `smtpx {args}` is not a valid command line"


def test_ci_runs_the_readme_test_command() -> None:
    # README, "Quick start": the second command is the whole test set-up, and CI runs exactly it.
    commands = [b.code.strip() for b in blocks("sh") if b.path.name == "README.md"]
    assert commands[1] == "bash .ci/install-peers && .venv-tools/bin/tox"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == commands[1]
