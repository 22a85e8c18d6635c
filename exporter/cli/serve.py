"""`w2vbert serve`: an artifact on a real Triton Inference Server until SIGINT / SIGTERM (no torch)."""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from pathlib import Path

import click

from runtime.providers import SESSION_PROVIDERS

from .common import verbosity


@click.command()
@click.argument("artifact", type=click.Path())
@click.option("--precision", default="fp32", show_default=True, help="Artifact variant to serve.")
@click.option("--provider", default="cpu", show_default=True, type=click.Choice(SESSION_PROVIDERS),
              help="onnxruntime's cpu / cuda / tensorrt, or openvino (the openvino extra; fp32, bf16, int8-qdq).")
@click.option("--name", help="Model name [w2vbert_<head>]; the audio model is <name>_audio.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Triton has no authentication: expose it only behind a gateway.")
@click.option("--http-port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--grpc-port", default=8001, show_default=True, type=click.IntRange(1, 65535))
@click.option("--metrics-port", default=8002, show_default=True, type=click.IntRange(1, 65535))
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(min=1),
              help="Requests per batch (Triton's max_batch_size).")
@click.option("--max-queue-delay-ms", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="How long a request may wait for others to share its batch (0: no dynamic batching).")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(min=1),
              help="Model instances (processes) per model.")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime threads per instance (default: all cores).")
@click.option("--max-audio-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Longest audio request accepted [what the attention-memory guard allows one call].")
@verbosity
def serve(artifact, precision, provider, name, host, http_port, grpc_port, metrics_port, max_batch,
          max_queue_delay_ms, instances, threads, max_audio_seconds):
    """Serve ARTIFACT on a Triton Inference Server: <name> (features in, as the ONNX) and <name>_audio
    (raw audio in, text / labels / embeddings out), until SIGINT or SIGTERM; in-flight requests finish."""
    from runtime.errors import OptionError

    from ..targets.triton_python import ServeOptions, serving_repository
    from ..targets.triton_server import Ports, TritonServer, check_ports_free

    if len({http_port, grpc_port, metrics_port}) < 3:
        raise OptionError(f"--http-port, --grpc-port and --metrics-port must differ, got {http_port}, {grpc_port}, "
                          f"{metrics_port}")
    ports = Ports(http_port, grpc_port, metrics_port, host)
    options = ServeOptions(precision, provider, threads, max_batch, max_queue_delay_ms, instances, max_audio_seconds)
    # the handlers go in before the server starts: a SIGTERM while it loads (a supervisor's stop) ends it
    # cleanly as soon as it is up, instead of killing this process with the server's stubs left behind
    with tempfile.TemporaryDirectory(prefix="w2vbert-serve-") as work, _stop_signals() as stop:
        work = Path(work)
        models = serving_repository(Path(artifact), work / "repository", name, options)
        server = TritonServer(work / "repository", work, ports)
        check_ports_free(ports)
        click.echo("starting Triton Inference Server ...", err=True)
        server.start()
        click.echo(f"http     http://{host}:{http_port}   (v2 inference protocol)")
        click.echo(f"grpc     {host}:{grpc_port}")
        click.echo(f"metrics  http://{host}:{metrics_port}/metrics")
        click.echo(f"models   {models[0]} (input_features, attention_mask)   {models[1]} (audio[, sampling_rate])")
        click.echo("serving until SIGINT or SIGTERM", err=True)
        code = _serve_until_signal(server, stop)
    if code != 0:
        from runtime.errors import ExportError

        raise ExportError(f"tritonserver ended with code {code}; its log ended:\n{server.log_tail()}")
    click.echo("stopped: every in-flight request was answered", err=True)


@contextlib.contextmanager
def _stop_signals():
    """SIGINT and SIGTERM recorded in the yielded list instead of ending the process."""
    stop: list[int] = []

    def request_stop(signum, frame):
        stop.append(signum)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _serve_until_signal(server, stop: list) -> int:
    """Wait for SIGINT / SIGTERM, then stop the server gracefully; 0 when every request was drained."""
    while not stop and server.process.poll() is None:
        time.sleep(0.25)  # a signal runs request_stop in between
    if server.process.poll() is not None and not stop:
        return server.process.returncode or 1  # it died on its own
    code = server.stop()
    return 0 if code == 0 or server.drained() else code
