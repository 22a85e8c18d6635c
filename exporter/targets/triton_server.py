"""A real Triton Inference Server: the `tritonserver` binary nvidia-pytriton ships, started on a repository.

That build has the Python backend (and no onnxruntime or TensorRT backend), so it serves the
Python-backend models of exporter.targets.triton_python. What starting it takes, learned here:

* The backend stub links the system ``libpython3.11.so``; when the running interpreter is another
  3.11 build, model load fails (``'_thread.RLock' object has no attribute '_recursion_count'``).
  The running interpreter's LIBDIR goes first on LD_LIBRARY_PATH.
* The stub is per Python version (``python_backend_stubs/3.11``); a backend directory is assembled
  next to the repository from links to the wheel's files.
* The stub's Python imports our package and its dependencies: PYTHONPATH carries the package root
  and this interpreter's site-packages. Its numpy must be 1.x (the backend's C++ tensor conversion
  misreads numpy 2 arrays: measured), which the `serve` extra pins through nvidia-pytriton.
* On a machine without a GPU it logs CUDA / NVML / DCGM errors: harmless. Its log goes to a file,
  shown when it fails to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import site
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import DependencyError, ExportError

log = logging.getLogger("w2vbert")
INSTALL_HINT = "pip install 'w2vbert-deploy[serve]' (nvidia-pytriton ships the tritonserver binary)"


@dataclass
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002
    host: str = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (for tests and benchmarks that start a server)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def triton_home() -> Path:
    """The tritonserver directory inside the nvidia-pytriton wheel."""
    try:
        import pytriton
    except ImportError as exc:
        raise DependencyError(f"serving needs nvidia-pytriton ({exc}); {INSTALL_HINT}") from exc
    home = Path(pytriton.__file__).resolve().parent / "tritonserver"
    if not (home / "bin" / "tritonserver").is_file():
        raise DependencyError(f"{home} holds no bin/tritonserver; reinstall: {INSTALL_HINT}")
    return home


def backend_directory(work: Path) -> Path:
    """backends/python with the wheel's backend library, its utils and the stub for this Python."""
    home = triton_home()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = home / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise DependencyError(f"nvidia-pytriton has no Python backend stub for Python {version}")
    target = work / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for source in (home / "backends" / "python" / "libtriton_python.so",
                   home / "backends" / "python" / "triton_python_backend_utils.py", stub):
        link = target / source.name
        if not link.exists():
            link.symlink_to(source)  # a link: the stub finds its libraries relative to its real path
    return work / "backends"


def server_env() -> dict[str, str]:
    import runtime

    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    root = str(Path(runtime.__file__).resolve().parents[1])  # the package root (editable installs too)
    paths = [root, *site.getsitepackages(), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


@dataclass
class TritonServer:
    """`tritonserver` on `repository`; a context manager that always stops it."""

    repository: Path
    work: Path
    ports: Ports = field(default_factory=Ports)
    load: list[str] | None = None  # explicit model control: only these models (None: all)
    process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        p = self.ports
        args = [str(triton_home() / "bin" / "tritonserver"), f"--model-repository={self.repository}",
                f"--backend-directory={backend_directory(self.work)}", f"--http-address={p.host}",
                f"--http-port={p.http}", f"--grpc-address={p.host}", f"--grpc-port={p.grpc}",
                f"--metrics-address={p.host}", f"--metrics-port={p.metrics}", "--exit-timeout-secs=30",
                "--log-verbose=0"]
        if self.load is not None:
            args += ["--model-control-mode=explicit", *[f"--load-model={m}" for m in self.load]]
        return args

    @property
    def log_path(self) -> Path:
        return self.work / "tritonserver.log"

    def start(self, timeout: float = 120.0) -> "TritonServer":
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                            env=server_env(), start_new_session=True)
        self.wait_ready(timeout)
        return self

    def url(self, path: str = "") -> str:
        return f"http://{self.ports.host}:{self.ports.http}{path}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ExportError(f"tritonserver exited with code {self.process.returncode} while starting; its "
                                  f"log ends:\n{self.log_tail()}")
            with contextlib.suppress(urllib.error.URLError, OSError):
                with urllib.request.urlopen(self.url("/v2/health/ready"), timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.25)
        self.stop()
        raise ExportError(f"tritonserver was not ready after {timeout:.0f} s; its log ends:\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (Triton finishes in-flight requests, then exits), SIGKILL after `timeout`."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # the server and its backend stubs
            return self.process.wait(10)

    def drained(self) -> bool:
        """After stop(): whether every in-flight inference had finished. Triton exits 1 when client
        connections (idle keep-alive ones included) are still open at its exit timeout."""
        return "Found 0 model versions that have in-flight inferences" in self.log_tail(200)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
