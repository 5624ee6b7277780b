"""The README's examples, run as printed against the real server.

Which fenced blocks of README.md run, and how. They run in document order,
in one scratch directory holding symlinks ``bin`` and ``_build`` to this
checkout, so ``bin/hornbeam ...`` and ``erl -pa _build/default/lib/hornbeam/ebin``
work as printed and the README's Python files sit in the current directory:

* ``python`` whose first line is ``# NAME.py``: written to ``NAME.py``. Any
  other python block is a fragment: compiled (a syntax check).
* ``erlang`` holding ``-module(M).``: written to ``M.erl`` and compiled with
  erlc (the shells below load it from the current directory).
* ``erlang`` otherwise: typed into an Erlang shell, one expression at a
  time. The shell is the one the ``sh`` block right before starts (when its
  last command is ``erl ...`` without -noshell/-eval/-s), else
  ``erl -pa _build/default/lib/hornbeam/ebin``. Lines ``N> expr`` make a
  transcript: the lines under each are the result the shell must print
  (log lines around them are allowed). Without prompts every expression
  must evaluate without an exception. A ``hornbeam:start(...)`` is checked
  as a server (below) before the next expression is typed, unless the same
  expression stops it again.
* ``sh``: every line is one command (``#`` starts a comment, as in bash),
  run with bash in order; exports and ``cd`` carry from line to line as in
  one terminal (``. .venv/bin/activate`` works). A command that prints
  "Ctrl-C to stop" is a server: it runs until its block is done. Every other
  command must exit 0.
* ``javascript``: ``node --check`` (a syntax check; it runs in a browser).
* Any other language (``text``, ``elixir``, ...) is not run.
* A block right after a line ``<!-- not run: REASON -->`` is not run. Use
  it sparingly, for what cannot run here (make targets, Mix fragments).

Checks on every server a block starts: ``GET /hornbeam.js`` answers 200; a
server of a module named in SERVER_CHECKS gets its checks (chat: a join of
``room:lobby`` and a ``new_msg`` reply and broadcast); servers of one block
whose commands use ``--join`` must form a cluster (a message sent on one
reaches a client of the other). Then each server gets Ctrl-C (SIGINT to its
process group) and must exit 0.

The ports (8000, 8001) and node names are used as printed: the run goes
into a private network namespace (``unshare -rn``) when the machine allows
one, so it never meets another server or epmd; without one it fails early
if a printed port is busy.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*\S.*-->\s*$")
SERVING = re.compile(r"serving .* on http://([0-9.]+|\[[0-9a-f:]+\]):([0-9]+)")
COMMAND_TIMEOUT = 300.0
SERVER_TIMEOUT = 90.0
SHELL_TIMEOUT = 120.0


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: Optional[str] = None  # the reason of a `not run` mark


def blocks(markdown: str) -> List[Block]:
    """Every fenced block, with the `not run` mark right before it."""
    out: List[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        body: List[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        skip = None
        if prev >= 0 and NOT_RUN.match(lines[prev].strip()):
            skip = lines[prev].strip()[4:-3].strip()[len("not run:"):].strip()
        out.append(Block(start + 1, m.group(1).lower(), "\n".join(body) + "\n", skip))
        i += 1
    return out


def commands(sh: str) -> List[str]:
    """The command lines of a sh block (continuations joined, comments and
    blank lines dropped)."""
    out: List[str] = []
    pending = ""
    for raw in sh.splitlines():
        line = pending + (raw.lstrip() if pending else raw)
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        if line.strip() and not line.strip().startswith("#"):
            out.append(line.strip())
    return out


def starts_erlang_shell(command: str) -> bool:
    words = shlex.split(command, comments=True)
    return bool(words) and words[0] == "erl" and not {"-noshell", "-eval", "-s", "-detached"} & set(words)


# ---------------------------------------------------------------------------
# a small Phoenix V2 WebSocket client (no dependency)
# ---------------------------------------------------------------------------


class Ws:
    def __init__(self, host: str, port: int, path: str = "/ws?vsn=2.0.0") -> None:
        self.sock = socket.create_connection((host.strip("[]"), port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"WebSocket upgrade refused: {head!r}")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.ref = 0

    def send(self, msg: list) -> None:
        data = json.dumps(msg).encode()
        mask = os.urandom(4)
        n = len(data)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("the server closed the WebSocket")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout: float = 30.0) -> list:
        self.sock.settimeout(timeout)
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            if b0 & 0x0F == 1:
                return json.loads(payload)

    def recv_event(self, topic: str, event: str, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.1, deadline - time.monotonic()))
            if msg[2] == topic and msg[3] == event:
                return msg

    def push(self, join_ref: str, topic: str, event: str, payload: dict) -> list:
        """Sends and waits for the reply to this message."""
        self.ref += 1
        ref = str(self.ref)
        self.send([join_ref, ref, topic, event, payload])
        while True:
            msg = self.recv()
            if msg[1] == ref and msg[3] == "phx_reply":
                return msg

    def close(self) -> None:
        self.sock.close()


def http_get(host: str, port: int, path: str) -> Tuple[int, bytes]:
    with socket.create_connection((host.strip("[]"), port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[-1]


# ---------------------------------------------------------------------------
# checks on servers
# ---------------------------------------------------------------------------


def check_chat(host: str, port: int) -> None:
    """The README's chat.py: a join needs a username, new_msg replies ok and
    reaches the other members."""
    a, b = Ws(host, port), Ws(host, port)
    try:
        refused = a.push("1", "room:lobby", "phx_join", {})
        assert refused[4]["status"] == "error", refused
        joined = a.push("2", "room:lobby", "phx_join", {"username": "ana"})
        assert joined[4] == {"status": "ok", "response": {"room_id": "lobby"}}, joined
        assert b.push("1", "room:lobby", "phx_join", {"username": "bo"})[4]["status"] == "ok"
        reply = a.push("2", "room:lobby", "new_msg", {"body": "hi"})
        assert reply[4] == {"status": "ok", "response": {"status": "ok"}}, reply
        got = b.recv_event("room:lobby", "new_msg")
        assert got[4] == {"username": "ana", "body": "hi"}, got
    finally:
        a.close()
        b.close()


SERVER_CHECKS: Dict[str, Callable[[str, int], None]] = {"chat": check_chat}


def check_server(module: Optional[str], host: str, port: int) -> None:
    status, body = http_get(host, port, "/hornbeam.js")
    assert status == 200 and b"Hornbeam" in body, (status, body[:200])
    if module in SERVER_CHECKS:
        SERVER_CHECKS[module](host, port)


def check_cluster(servers: List["Server"]) -> None:
    """A message sent on the last server reaches a client of the first."""
    (h1, p1), (h2, p2) = servers[0].url, servers[-1].url
    a, b = Ws(h1, p1), Ws(h2, p2)
    try:
        assert a.push("1", "room:lobby", "phx_join", {"username": "ana"})[4]["status"] == "ok"
        assert b.push("1", "room:lobby", "phx_join", {"username": "bo"})[4]["status"] == "ok"
        deadline = time.monotonic() + 30
        while True:  # the nodes' process groups may take a moment to meet
            b.push("1", "room:lobby", "new_msg", {"body": "across"})
            try:
                got = a.recv_event("room:lobby", "new_msg", timeout=1.0)
                assert got[4]["body"] == "across", got
                return
            except socket.timeout:
                assert time.monotonic() < deadline, "the servers of the block do not form a cluster"
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------


class Output:
    """Collects a process's output from a thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.text = ""
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            with self.lock:
                self.text += chunk.decode("utf-8", "replace")

    def wait_for(self, pattern: "re.Pattern[str]", timeout: float) -> Optional["re.Match[str]"]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                m = pattern.search(self.text)
            if m:
                return m
            if self.proc.poll() is not None:
                self.thread.join(5)
                return pattern.search(self.text)
            time.sleep(0.05)
        return None


@dataclass
class Server:
    command: str
    proc: subprocess.Popen
    out: Output
    url: Tuple[str, int]
    module: Optional[str]


@dataclass
class Run:
    work: str
    log: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env_file = os.path.join(self.work, ".readme-env")
        self.cwd_file = os.path.join(self.work, ".readme-cwd")
        with open(self.cwd_file, "w") as f:
            f.write(self.work)
        with open(self.env_file, "w") as f:
            f.write("")

    def bash(self, command: str) -> subprocess.Popen:
        """command as typed into the terminal the block's earlier lines left."""
        script = (f'. {shlex.quote(self.env_file)} 2>/dev/null; cd "$(cat {shlex.quote(self.cwd_file)})"\n'
                  f"{command}\n"
                  f"__rc=$?; export -p > {shlex.quote(self.env_file)}; pwd > {shlex.quote(self.cwd_file)}; "
                  "exit $__rc\n")
        return subprocess.Popen(["bash", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)

    # -- sh --------------------------------------------------------------------

    def sh(self, block: Block) -> Optional[str]:
        """Runs the block; returns the Erlang shell command it ends with, if any."""
        cmds = commands(block.text)
        shell = cmds.pop() if cmds and starts_erlang_shell(cmds[-1]) else None
        servers: List[Server] = []
        try:
            for cmd in cmds:
                self.log.append(f"$ {cmd}")
                proc = self.bash(cmd)
                assert proc.stdin is not None
                proc.stdin.close()
                out = Output(proc)
                m = out.wait_for(re.compile(r"Ctrl-C to stop"), COMMAND_TIMEOUT)
                if m is None:
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        raise AssertionError(f"README.md:{block.line}: `{cmd}` did not finish:\n{out.text}")
                    assert proc.returncode == 0, \
                        f"README.md:{block.line}: `{cmd}` exited {proc.returncode}:\n{out.text}"
                    continue
                url = SERVING.search(out.text)
                assert url, f"README.md:{block.line}: `{cmd}` serves but says nowhere:\n{out.text}"
                app = re.search(r"\brun\s+([A-Za-z_][\w.]*):", cmd)
                servers.append(Server(cmd, proc, out, (url.group(1), int(url.group(2))),
                                      app.group(1) if app else None))
            for s in servers:
                self.log.append(f"  check {s.module} on {s.url}")
                check_server(s.module, *s.url)
            if len(servers) > 1 and any("--join" in s.command for s in servers):
                self.log.append("  check the cluster")
                check_cluster(servers)
        finally:
            for s in reversed(servers):
                stop(s, block)
        return shell

    # -- erlang ----------------------------------------------------------------

    def erlang(self, block: Block, shell: Optional[str]) -> None:
        module = re.search(r"^-module\(([a-z][A-Za-z0-9_]*)\)\.", block.text, re.M)
        if module:
            path = os.path.join(self.work, module.group(1) + ".erl")
            with open(path, "w") as f:
                f.write(block.text)
            r = subprocess.run(["erlc", "-o", self.work, path], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, f"README.md:{block.line}: erlc failed:\n{r.stdout}{r.stderr}"
            return
        command = shell or "erl -pa _build/default/lib/hornbeam/ebin"
        self.log.append(f"$ {command}   (typing README.md:{block.line} into it)")
        proc = self.bash(command)
        out = Output(proc)
        try:
            for n, (expr, expected) in enumerate(expressions(block.text), start=1):
                prompt = re.compile(rf"(?:^|\n|\s){n}> ")
                shown = out.wait_for(prompt, SHELL_TIMEOUT)
                assert shown, f"README.md:{block.line}: no prompt {n}> from `{command}`:\n{out.text}"
                start = shown.end()
                assert proc.stdin is not None
                proc.stdin.write((expr + "\n").encode())
                proc.stdin.flush()
                nxt = re.compile(rf"(?:^|\n|\s){n + 1}> ")
                m = out.wait_for(nxt, SHELL_TIMEOUT)
                assert m, f"README.md:{block.line}: `{expr}` did not finish:\n{out.text}"
                result = out.text[start:m.start()]
                self.log.append(f"  {n}> {expr}\n{indent(result)}")
                assert "** exception" not in result and not re.search(r"(^|\n)\* \d+:\d+: ", result), \
                    f"README.md:{block.line}: `{expr}` failed:\n{result}"
                if expected:
                    assert contains_lines(result, expected), \
                        f"README.md:{block.line}: `{expr}` printed\n{result}\nnot\n" + "\n".join(expected)
                if "hornbeam:start(" in expr and "hornbeam:stop()" not in expr:
                    bind = re.search(r'bind\s*=>\s*"([^"]+):([0-9]+)"', expr)
                    host, port = (bind.group(1), int(bind.group(2))) if bind else ("127.0.0.1", 8000)
                    app = re.search(r'hornbeam:start\(\s*"([A-Za-z_][\w.]*):', expr)
                    self.log.append(f"  check {app.group(1) if app else None} on {(host, port)}")
                    check_server(app.group(1) if app else None, host, port)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
        assert proc.returncode == 0, f"README.md:{block.line}: the shell exited {proc.returncode}"

    # -- the rest --------------------------------------------------------------

    def python(self, block: Block) -> None:
        name = re.match(r"#\s*([A-Za-z_][\w]*\.py)\s*$", block.text.splitlines()[0])
        if name:
            with open(os.path.join(self.work, name.group(1)), "w") as f:
                f.write(block.text)
        else:
            compile(block.text, f"README.md:{block.line}", "exec")

    def javascript(self, block: Block) -> None:
        path = os.path.join(self.work, f"readme_{block.line}.js")
        with open(path, "w") as f:
            f.write(block.text)
        r = subprocess.run(["node", "--check", path], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"README.md:{block.line}: node --check failed:\n{r.stderr}"


def stop(server: Server, block: Block) -> None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGINT)
    try:
        server.proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        raise AssertionError(f"README.md:{block.line}: `{server.command}` ignored Ctrl-C")
    assert server.proc.returncode == 0, \
        f"README.md:{block.line}: `{server.command}` exited {server.proc.returncode} on Ctrl-C:\n" \
        f"{server.out.text}"


def expressions(text: str) -> List[Tuple[str, List[str]]]:
    """(expression, expected result lines) of an Erlang shell block: a
    transcript (`N> expr`) or plain expressions ending with `.`."""
    lines = text.splitlines()
    if any(re.match(r"^\d+> ", line) for line in lines):
        out: List[Tuple[str, List[str]]] = []
        for line in lines:
            m = re.match(r"^\d+> (.*)$", line)
            if m:
                out.append((m.group(1), []))
            elif out and line.strip():
                if not out[-1][0].rstrip().endswith("."):
                    out[-1] = (out[-1][0] + "\n" + line, out[-1][1])
                else:
                    out[-1][1].append(line.rstrip())
        return out
    exprs, cur = [], ""
    for line in lines:
        cur += line + "\n"
        if re.sub(r"%.*$", "", line).rstrip().endswith("."):
            exprs.append((cur.strip(), []))
            cur = ""
    assert not cur.strip(), f"an Erlang expression without its final '.': {cur}"
    return exprs


def contains_lines(text: str, expected: List[str]) -> bool:
    got = [line.rstrip() for line in text.splitlines()]
    return any(got[i:i + len(expected)] == expected for i in range(len(got)))


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines())


def ports_printed(markdown: str) -> List[int]:
    return sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(80[0-9][0-9])\b", markdown)} | {8000})


def run_readme(work: str) -> List[str]:
    os.symlink(os.path.join(ROOT, "bin"), os.path.join(work, "bin"))
    os.symlink(os.path.join(ROOT, "_build"), os.path.join(work, "_build"))
    with open(README) as f:
        markdown = f.read()
    if os.environ.get("HORNBEAM_README_NETNS") != "1":
        for port in ports_printed(markdown):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, \
                    f"port {port} is busy and no network namespace is available to run the README in"
    run = Run(work)
    shell: Optional[str] = None
    for block in blocks(markdown):
        if block.skip:
            run.log.append(f"README.md:{block.line} {block.lang}: not run ({block.skip})")
            continue
        if shell and block.lang != "erlang":
            raise AssertionError(f"README.md:{block.line}: `{shell}` must be followed by an erlang block")
        run.log.append(f"README.md:{block.line} {block.lang}")
        if block.lang == "sh":
            shell = run.sh(block)
        elif block.lang == "erlang":
            run.erlang(block, shell)
            shell = None
        elif block.lang == "python":
            run.python(block)
        elif block.lang == "javascript":
            run.javascript(block)
        else:
            run.log[-1] += ": not run (language)"
    return run.log


def main() -> int:
    work = tempfile.mkdtemp(prefix="hornbeam-readme-")
    try:
        log = run_readme(work)
        print("\n".join(log))
        print("README examples: all ran")
        return 0
    except AssertionError as e:
        print(f"README examples: FAILED\n{e}")
        return 1
    finally:
        if os.environ.get("HORNBEAM_README_NETNS") == "1":
            subprocess.run(["epmd", "-kill"], capture_output=True, timeout=30)  # ours, in this namespace
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# pytest
# ---------------------------------------------------------------------------


def netns_prefix() -> List[str]:
    """unshare into a private network namespace with loopback up, if allowed."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return []
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        return []
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && HORNBEAM_README_NETNS=1 exec "$@"', "sh"]


def test_extraction_reads_fences_marks_and_file_names() -> None:
    md = ("x\n<!-- not run: a reason -->\n\n```sh\nmake run\n```\n```python\n# a.py\nX = 1\n```\n"
          "```erlang\n1> ok.\nok\n2> X =\n  1.\n1\n```\n")
    got = blocks(md)
    assert [(b.line, b.lang, b.skip) for b in got] == [(4, "sh", "a reason"), (7, "python", None),
                                                       (11, "erlang", None)]
    assert expressions(got[2].text) == [("ok.", ["ok"]), ("X =\n  1.", ["1"])]
    assert commands("a \\\n  b  # c\n# d\n\nc\n") == ["a b  # c", "c"]
    assert starts_erlang_shell("erl -pa x   # a shell") and not starts_erlang_shell("erl -noshell -s a")


def test_readme_examples_run_as_printed() -> None:
    if not os.path.exists(os.path.join(ROOT, "priv", "hornbeam_worker")):
        raise AssertionError("the build is missing: run `make build` first")
    r = subprocess.run(netns_prefix() + [sys.executable, os.path.abspath(__file__)],
                       capture_output=True, text=True, timeout=900)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-4000:]


if __name__ == "__main__":
    sys.exit(main())
