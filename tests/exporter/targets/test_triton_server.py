"""A real Triton Inference Server (nvidia-pytriton's tritonserver) serving an artifact on localhost.

Every server is started by the test and stopped at the end, failures included; every client loop
is bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="needs the serve extra: pip install -e '.[serve]' (nvidia-pytriton)")
http = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the serve extra)")
grpc = pytest.importorskip("tritonclient.grpc", reason="needs tritonclient[grpc] (the serve extra)")

from tritonclient.utils import InferenceServerException  # noqa: E402

from exporter.export import export  # noqa: E402
from exporter.model.sources import BUNDLED  # noqa: E402
from exporter.plan import TritonPlan  # noqa: E402
from exporter.targets.triton_python import ServeOptions, serving_repository  # noqa: E402
from exporter.targets.triton_server import Ports, TritonServer, free_ports  # noqa: E402
from runtime import Session  # noqa: E402
from runtime.audio import load_audio  # noqa: E402
from tests.conftest import run_in_threads  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted((BUNDLED / "samples").glob("*.wav"))
LIMIT_SECONDS = 6.0  # --max-audio-seconds of the served models



@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    art = export(None, work / "digits")
    names = serving_repository(art, work / "repository", None,
                               ServeOptions(max_batch=8, queue_delay_ms=20, max_audio_seconds=LIMIT_SECONDS))
    server = TritonServer(work / "repository", work, Ports(*free_ports(3)))
    server.start(timeout=180)
    try:
        yield server, art, names
    finally:
        server.stop()


@contextlib.contextmanager
def serve_process(command: list[str], **popen):
    """`w2vbert serve` as a child process; when the block ends, SIGTERM (how systemd and Docker stop it)
    must end it with exit code 0 within 120 s. It is killed however the block ends."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **popen)
    try:
        yield proc
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert code == 0, proc.stderr.read()


def http_client(server):
    return http.InferenceServerClient(f"127.0.0.1:{server.ports.http}", connection_timeout=60, network_timeout=60)


def audio_inputs(module, wave, rate=None, dtype="FP32"):
    audio = module.InferInput("audio", [1, len(wave)], dtype)
    audio.set_data_from_numpy(np.asarray(wave)[None])
    inputs = [audio]
    if rate is not None:
        rate_input = module.InferInput("sampling_rate", [1, 1], "INT32")
        rate_input.set_data_from_numpy(np.array([[rate]], np.int32))
        inputs.append(rate_input)
    return inputs


def text(result) -> str:
    return result.as_numpy("text")[0, 0].decode()


def test_server_live_and_both_models_ready(served):
    server, _, (features, audio) = served
    client = http_client(server)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(features) and client.is_model_ready(audio)
        meta = client.get_model_metadata(features)
        assert [i["name"] for i in meta["inputs"]] == ["input_features", "attention_mask"]
        assert [o["name"] for o in meta["outputs"]] == ["logits"]
    finally:
        client.close()


def test_http_and_grpc_transcripts_equal_the_session(served):
    server, art, (_, audio) = served
    session = Session(art)
    waves = [load_audio(p) for p in SAMPLES]
    expected = session.transcribe(waves)
    h, g = http_client(server), grpc.InferenceServerClient(f"127.0.0.1:{server.ports.grpc}")
    try:
        assert [text(h.infer(audio, audio_inputs(http, w))) for w in waves] == expected
        assert [text(g.infer(audio, audio_inputs(grpc, w))) for w in waves] == expected
        with pytest.raises(InferenceServerException) as caught:  # a bad request over gRPC: INVALID_ARGUMENT
            g.infer(audio, audio_inputs(grpc, np.zeros(100, np.float32)))
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and "at least 560" in str(caught.value)
        # 8 kHz audio is resampled by the model as the CLI does
        from runtime.audio import resample

        low = resample(waves[0], 16000, 8000)
        assert text(h.infer(audio, audio_inputs(http, low, rate=8000))) == session.transcribe([low], 8000)[0]
        features, mask = session.audio_runner().features(waves[0])
        logits = h.infer(served[2][0], [_features_input(features), _features_input(mask, "attention_mask", "INT64")])
        np.testing.assert_allclose(logits.as_numpy("logits"), session.run(features, mask)["logits"], atol=1e-4)
    finally:
        h.close()
        g.close()


def _mixed_waves(count: int, seed: int) -> list[np.ndarray]:
    speech = np.concatenate([load_audio(p) for p in SAMPLES])
    rng = np.random.default_rng(seed)
    waves = []
    for _ in range(count):
        n = int(rng.uniform(0.6, 4.0) * 16000)
        start = int(rng.integers(0, len(speech) - n))
        waves.append(speech[start:start + n].copy())
    return waves


def test_concurrent_clients_of_mixed_lengths_are_batched(served):
    server, art, (_, audio) = served
    clients, per_client = 8, 25
    waves = _mixed_waves(clients * per_client, seed=3)
    session = Session(art)
    expected = [session.transcribe([w])[0] for w in waves]  # serial, one utterance per call
    got: dict[int, str] = {}

    def work(k: int):
        client = http_client(server)
        try:
            for i in range(k * per_client, (k + 1) * per_client):
                got[i] = text(client.infer(audio, audio_inputs(http, waves[i])))
        finally:
            client.close()

    run_in_threads(work, [(k,) for k in range(clients)], timeout=300)
    assert [got[i] for i in range(len(waves))] == expected
    client = http_client(server)
    try:
        stats = client.get_inference_statistics(audio)["model_stats"][0]
    finally:
        client.close()
    assert max(int(b["batch_size"]) for b in stats["batch_stats"]) > 1  # Triton merged requests of different lengths


def _features_input(array, name="input_features", dtype="FP32"):
    tensor = http.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return tensor


BAD = [
    ("audio", lambda: audio_inputs(http, np.zeros(100, np.float32)), "at least 560"),
    ("audio", lambda: audio_inputs(http, np.zeros(0, np.float32)), "has 0 samples"),
    ("audio", lambda: audio_inputs(http, np.full(8000, np.nan, np.float32)), "NaN or Inf"),
    ("audio", lambda: audio_inputs(http, np.zeros(16000, np.float32), rate=10), "sampling_rate 10 Hz is not supported"),
    ("audio", lambda: audio_inputs(http, np.zeros(int(7 * 16000), np.float32)), "over this server's limit of 6.0 s"),
    ("audio", lambda: audio_inputs(http, np.zeros(16000, np.float32))[:0] + [
        _features_input(np.array([[16000]], np.int32), "sampling_rate", "INT32")], "has no 'audio' input"),
    ("features", lambda: [_features_input(np.full((1, 20, 160), np.nan, np.float32))], "NaN"),
    ("features", lambda: [_features_input(np.zeros((1, 20, 160), np.float32)),
                          _features_input(np.ones((1, 10), np.int64), "attention_mask", "INT64")], "does not match"),
    ("features", lambda: [_features_input(np.zeros((1, 40000, 160), np.float32))], "for attention scores"),
]


@pytest.mark.parametrize("kind,inputs,message", BAD, ids=[m for _, _, m in BAD])
def test_bad_request_gets_our_message_and_the_server_goes_on(served, kind, inputs, message):
    server, _, (features, audio) = served
    client = http_client(server)
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(audio if kind == "audio" else features, inputs())
        assert message in str(caught.value)
        assert caught.value.status() == "400", caught.value.status()  # the client's mistake, not a server error
        assert client.is_server_ready() and client.is_model_ready(audio)
        assert text(client.infer(audio, audio_inputs(http, load_audio(SAMPLES[0])))) != ""  # and serves the next
    finally:
        client.close()


def test_wrong_dtype_or_rank_is_refused_by_triton_naming_the_input(served):
    """Triton checks datatype and shape against config.pbtxt before the model sees a request."""
    server, _, (features, audio) = served
    client = http_client(server)
    try:
        for model, inputs, name in ((audio, audio_inputs(http, np.zeros(16000, np.float64), dtype="FP64"), "audio"),
                                    (audio, [_features_input(np.zeros((1, 16000, 2), np.float32), "audio")], "audio"),
                                    (features, [_features_input(np.zeros((1, 20, 80), np.float32))], "input_features")):
            with pytest.raises(Exception) as caught:
                client.infer(model, inputs)
            assert f"'{name}'" in str(caught.value)
        assert client.is_server_ready()
    finally:
        client.close()


def test_sigterm_during_load_finishes_in_flight_requests_and_exits_0(served, tmp_path):
    _, art, _ = served
    ports = free_ports(3)
    proc = subprocess.Popen([sys.executable, "-m", "exporter.cli", "serve", str(art), "--http-port", str(ports[0]),
                             "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2])], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        server = TritonServer(tmp_path, tmp_path, Ports(*ports))
        server.process = proc
        server.wait_ready(180)
        waves = _mixed_waves(40, seed=5)
        started, finished, failed = [], [], []
        stop = threading.Event()

        def work(k: int):
            client = http.InferenceServerClient(f"127.0.0.1:{ports[0]}", network_timeout=60)
            try:
                for i in range(k, len(waves), 4):
                    if stop.is_set():
                        break
                    started.append(i)
                    text(client.infer("w2vbert_ctc_audio", audio_inputs(http, waves[i])))
                    finished.append(i)
            except Exception as exc:  # noqa: BLE001 - after SIGTERM new requests may be refused
                failed.append((i, stop.is_set(), exc))
            finally:
                client.close()

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(finished) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        in_flight = set(started) - set(finished)
        stop.set()
        os.kill(proc.pid, signal.SIGTERM)
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a client thread still runs 120 s after SIGTERM"
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert code == 0, proc.stderr.read()
    assert in_flight <= set(finished)  # every request in flight at SIGTERM was answered
    assert not [f for f in failed if not f[1]]  # nothing failed before the signal


def test_exported_repository_audio_model_runs_in_the_stock_server(tmp_path):
    art = export(None, tmp_path / "art", triton=TritonPlan(tmp_path / "repo"))
    model = "w2vbert_ctc_audio"
    assert (tmp_path / "repo" / model / "1" / "model.py").is_file()
    # The onnxruntime-backend models need a full Triton build; this one has the Python backend only.
    server = TritonServer(tmp_path / "repo", tmp_path, Ports(*free_ports(3)), load=[model])
    with server:
        client = http_client(server)
        try:
            wave = load_audio(SAMPLES[2])
            assert text(client.infer(model, audio_inputs(http, wave))) == Session(art).transcribe([wave])[0]
        finally:
            client.close()


def test_serve_from_the_venv_by_path_without_activation_from_another_directory(served, tmp_path):
    """How systemd, cron, pipx and Docker entrypoints run it: `<venv>/bin/w2vbert serve` with a PATH
    that does not hold the venv, from a directory outside the repository."""
    _, art, _ = served
    command = Path(sys.executable).parent / "w2vbert"
    assert command.is_file(), f"{command}: the package's console script, installed with the package"
    ports = free_ports(3)
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)), "LANG": "C.UTF-8"}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with serve_process([str(command), "serve", str(art), "--http-port", str(ports[0]), "--grpc-port",
                        str(ports[1]), "--metrics-port", str(ports[2])], cwd=outside, env=env) as proc:
        server = TritonServer(tmp_path, tmp_path, Ports(*ports))
        server.process = proc
        server.wait_ready(180)
        client = http.InferenceServerClient(f"127.0.0.1:{ports[0]}", network_timeout=60)
        try:
            wave = load_audio(SAMPLES[1])
            expected = Session(art).transcribe([wave])[0]
            assert text(client.infer("w2vbert_ctc_audio", audio_inputs(http, wave))) == expected
            with pytest.raises(InferenceServerException) as caught:
                client.infer("w2vbert_ctc_audio", audio_inputs(http, np.full(8000, np.nan, np.float32)))
            assert caught.value.status() == "400" and "NaN or Inf" in str(caught.value)
        finally:
            client.close()


def test_a_failed_start_is_one_line_naming_the_cause(tmp_path):
    """Triton prints its option table and NVML noise before the reason; the error names the reason."""
    server = TritonServer(tmp_path, tmp_path)
    server.log_path.write_text(
        'W1204 18:35:07.1 6310 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory"\n'
        'E1204 18:35:07.2 6310 server.cc:241] "CudaDriverHelper has not been initialized."\n'
        "+------------------+------+\n| exit_timeout     | 30   |\n+------------------+------+\n"
        'E1204 18:35:07.725987 6310 main.cc:257] "failed to start HTTP service: Unavailable - Socket '
        "'127.0.0.1:8000' already in use \"\n")
    assert server.start_error() == "failed to start HTTP service: Unavailable - Socket '127.0.0.1:8000' already in use"
    server.log_path.write_text(
        'E1204 18:36:49.38 7440 model_lifecycle.cc:642] "failed to load \'m_audio\' version 1: Internal: '
        "ModuleNotFoundError: No module named 'runtime'\\n\\nAt:\\n  /tmp/r/m_audio/1/model.py(2): <module>\"\n"
        "error: creating server: Internal - failed to load all models\n")
    assert server.start_error() == ("failed to load 'm_audio' version 1: Internal: ModuleNotFoundError: No module "
                                    "named 'runtime'")
    server.log_path.write_text("I1204 ready\nerror: creating server: Internal - failed to load all models\n")
    assert server.start_error() == "error: creating server: Internal - failed to load all models"


def test_serve_options_reach_the_running_models(served, tmp_path):
    """--name, --instances, --host, --max-queue-delay-ms, --threads and --provider (OpenVINO), read back from
    the live server; its transcript is the onnxruntime Session's."""
    _, art, _ = served
    ports = free_ports(3)
    with serve_process([sys.executable, "-m", "exporter.cli", "serve", str(art), "--name", "digits",
                        "--instances", "2", "--host", "127.0.0.2", "--max-queue-delay-ms", "0", "--threads", "1",
                        "--provider", "openvino", "--http-port", str(ports[0]), "--grpc-port", str(ports[1]),
                        "--metrics-port", str(ports[2])], cwd=tmp_path) as proc:
        server = TritonServer(tmp_path, tmp_path, Ports(*ports, host="127.0.0.2"))
        server.process = proc
        server.wait_ready(180)
        client = http.InferenceServerClient(f"127.0.0.2:{ports[0]}", network_timeout=60)
        try:
            assert client.is_model_ready("digits") and client.is_model_ready("digits_audio")
            for model in ("digits", "digits_audio"):
                config = client.get_model_config(model)
                assert [g["count"] for g in config["instance_group"]] == [2], config
                assert "dynamic_batching" not in config, config  # a queue delay of 0: no batching wait
                assert config["parameters"]["threads"]["string_value"] == "1"
                assert config["parameters"]["provider"]["string_value"] == "openvino"
            wave = load_audio(SAMPLES[0])
            assert text(client.infer("digits_audio", audio_inputs(http, wave))) == Session(art).transcribe([wave])[0]
        finally:
            client.close()
        with pytest.raises(ConnectionRefusedError):  # it listens on the --host address only
            http.InferenceServerClient(f"127.0.0.1:{ports[0]}", connection_timeout=2).is_server_live()
