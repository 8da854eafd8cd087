"""Test support: real cometd processes on sockets in temporary directories, stopped by PID."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Iterator

import pytest

REPO = pathlib.Path(os.environ.get("COMET_REPO", pathlib.Path(__file__).resolve().parents[3]))
COMETD = os.environ.get("COMET_DAEMON", str(REPO / ".build/release/cometd"))
COMET = os.environ.get("COMET_CLI", str(REPO / ".build/release/comet"))


def _wait_for_socket(path: str, process: subprocess.Popen[bytes], log: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cometd exited early:\n{pathlib.Path(log).read_text()}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"cometd did not answer within {timeout} s")


class Daemon:
    """`cometd --socket DIR/comet.sock ARGS`, stopped by PID."""

    def __init__(self, *args: str, directory: str | None = None) -> None:
        self.directory = directory or tempfile.mkdtemp(prefix="comet-py-")
        self.socket = self.directory + "/comet.sock"
        self.log_path = self.directory + "/cometd.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([COMETD, "--socket", self.socket, *args], stdout=subprocess.DEVNULL, stderr=log)
        _wait_for_socket(self.socket, self.process, self.log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def kill(self) -> None:
        """kill -9, keeping the directory (a new Daemon may use it)."""
        self.process.kill()
        self.process.wait()
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class Supervisor:
    """What systemd does for cometd (sd_listen_fds, sd_notify, the file-descriptor store), so that
    a test can kill -9 the daemon and start it again with its state: the Python twin of
    Sources/CometSupervision/Supervisor.swift."""

    def __init__(self, *args: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="comet-sv-", dir="/tmp")
        self.socket = self.directory + "/comet.sock"
        self.notify_path = self.directory + "/notify"
        self.log_path = self.directory + "/cometd.log"
        self.args = args
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.socket)
        self.listener.listen(4096)
        os.chmod(self.socket, 0o666)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(0.1)
        self.store: list[tuple[str, int]] = []
        self.messages: list[str] = []
        self.lock = threading.Lock()
        self.running = True
        self.process: subprocess.Popen[bytes] | None = None
        self.receiver = threading.Thread(target=self._receive, daemon=True)
        self.receiver.start()

    def _receive(self) -> None:
        while self.running:
            try:
                data, fds, _, _ = socket.recv_fds(self.notify, 8192, 253)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            text = data.decode(errors="replace")
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            with self.lock:
                self.messages.append(text)
                if fields.get("FDSTORE") == "1":
                    self.store += [(fields.get("FDNAME", "stored"), fd) for fd in fds]
                else:
                    for fd in fds:
                        os.close(fd)
                if fields.get("FDSTOREREMOVE") == "1":
                    name = fields.get("FDNAME")
                    for n, fd in [e for e in self.store if e[0] == name]:
                        os.close(fd)
                    self.store = [e for e in self.store if e[0] != name]

    def ready_count(self) -> int:
        with self.lock:
            return sum(1 for m in self.messages if "READY=1" in m.split("\n"))

    def start(self, *extra: str) -> None:
        before = self.ready_count()
        with self.lock:
            passed = [("comet.socket", self.listener.fileno())] + list(self.store)
        high = [os.dup(fd) for _, fd in passed]

        def place() -> None:
            for index, fd in enumerate(high):
                os.dup2(fd, 3 + index)
            os.closerange(3 + len(high), 65536)

        env = dict(os.environ)
        env.pop("COMET_SOCKET", None)
        env.update(NOTIFY_SOCKET=self.notify_path, LISTEN_FDS=str(len(passed)),
                   LISTEN_FDNAMES=":".join(name for name, _ in passed))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', COMETD, *self.args, *extra],
                env=env, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=place, close_fds=False)
        for fd in high:
            os.close(fd)
        deadline = time.monotonic() + 20
        while self.ready_count() <= before:
            if self.process.poll() is not None:
                raise RuntimeError(f"cometd exited before READY=1:\n{self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no READY=1 within 20 s:\n{self.log}")
            time.sleep(0.005)

    @property
    def log(self) -> str:
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        time.sleep(0.05)

    def close(self) -> None:
        self.stop(signal.SIGKILL)
        self.running = False
        self.receiver.join(2)
        self.listener.close()
        self.notify.close()
        for _, fd in self.store:
            os.close(fd)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    d = Daemon()
    yield d
    d.stop()


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    s = Supervisor()
    s.start()
    yield s
    s.close()


def run_cli(*args: str, timeout: float = 30, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The comet CLI, to its end."""
    return subprocess.run([COMET, *args], capture_output=True, timeout=timeout, input=input)


