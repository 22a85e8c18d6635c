"""A real Triton Inference Server: the `tritonserver` binary nvidia-pytriton ships, started on a repository.

That build has the Python backend (and no onnxruntime or TensorRT backend), so it serves the
Python-backend models of exporter.targets.triton_python. What starting it takes:

* The backend stub links the system ``libpython3.11.so``; when the running interpreter is another
  3.11 build, model load fails (``'_thread.RLock' object has no attribute '_recursion_count'``).
  The running interpreter's LIBDIR goes first on LD_LIBRARY_PATH.
* The stub is per Python version (``python_backend_stubs/3.11``); a backend directory is assembled
  next to the repository from links to the wheel's files.
* The stub's embedded Python takes its prefix from the first ``python3`` on PATH (PYTHONPATH does
  not change that), so the running interpreter's folder goes first on PATH; PYTHONPATH also
  carries the package root and this interpreter's site-packages. Its numpy must be 1.x (the backend's C++ tensor
  conversion misreads numpy 2 arrays: measured), which the `serve` extra pins through nvidia-pytriton.
* On a machine without a GPU it logs CUDA / NVML / DCGM errors: harmless. Its log goes to a file,
  shown when it fails to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import DependencyError, ExportError
from runtime.triton_model import PREFIX_VARIABLE

log = logging.getLogger("w2vbert")
INSTALL_HINT = "pip install 'w2vbert-deploy[serve]' (nvidia-pytriton ships the tritonserver binary)"


GPU_NOISE = ("CudaDriverHelper", "NVML", "DCGM", "CUDA")  # errors Triton logs on every machine without a GPU


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


def check_ports_free(ports: Ports) -> None:
    """Refuse, in one line, ports another process holds: tritonserver would find out only after
    loading every model, and say so in the last of some thirty log lines."""
    from runtime.errors import OptionError

    for label, port in (("--http-port", ports.http), ("--grpc-port", ports.grpc), ("--metrics-port", ports.metrics)):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tritonserver binds
            try:
                probe.bind((ports.host, port))
            except OSError as exc:
                raise OptionError(f"{label} {port}: {ports.host}:{port} is not free ({exc.strerror}); stop what "
                                  f"listens there or choose another port") from None


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
    """The environment of `tritonserver`: its Python backend stub must see exactly this interpreter's
    environment (venv, site-packages), however the command was started."""
    import runtime

    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    # The stub's embedded interpreter finds its prefix by searching PATH for `python3` and ignores
    # PYTHONPATH for it: without the venv's bin/ first, a venv called by path (systemd, cron, pipx,
    # a Docker entrypoint) is served by the system Python, which lacks our dependencies.
    env["PATH"] = os.pathsep.join(p for p in (str(interpreter_bin()), env.get("PATH", "")) if p)
    root = str(Path(runtime.__file__).resolve().parents[1])  # the package root (editable installs too)
    paths = [root, *site.getsitepackages(), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env[PREFIX_VARIABLE] = sys.prefix  # runtime.triton_model refuses to load under another interpreter
    return env


def interpreter_bin() -> Path:
    """The folder of the running interpreter, which must hold the `python3` the stub looks for."""
    folder = Path(sys.executable).parent  # not resolved: a venv's python3 is a link out of the venv
    if not (folder / "python3").exists():
        raise DependencyError(f"{folder} has no python3 beside {Path(sys.executable).name}: Triton's Python "
                              "backend finds its interpreter by that name; run w2vbert from a venv or install "
                              "that has one")
    return folder


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
                log.debug("tritonserver's log ends:\n%s", self.log_tail())
                raise ExportError(f"tritonserver exited with code {self.process.returncode} while starting: "
                                  f"{self.start_error()} (w2vbert -v shows its log)")
            with contextlib.suppress(urllib.error.URLError, OSError):
                with urllib.request.urlopen(self.url("/v2/health/ready"), timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.25)
        self.stop()
        raise ExportError(f"tritonserver was not ready after {timeout:.0f} s; its log ends:\n{self.log_tail()}")

    def start_error(self) -> str:
        """The cause of a failed start in one line: Triton's first error line that is not a missing GPU
        (``E1204 ... main.cc:257] "failed to start HTTP service: ..."``, a model's load failure), or else
        its closing ``error: ...`` line."""
        lines = self.log_tail(1000).splitlines()
        for line in lines:
            found = re.match(r'E\d{4} [^\]]*\] "?(.*?)"?\s*$', line.strip())
            if found and not any(word in found.group(1) for word in GPU_NOISE):
                return " ".join(found.group(1).split("\\n")[0].split())  # a traceback follows as escaped \n
        closing = [line.strip() for line in lines if line.strip().startswith("error:")]
        return closing[-1] if closing else f"no error line in its log; it ends: {lines[-1] if lines else '(empty)'}"

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
