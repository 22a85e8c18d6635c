"""The runtime must import where torch (and transformers) cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('torch', 'transformers'):
                raise ImportError('blocked for this test: ' + name)
            return None
    sys.meta_path.insert(0, _Block())
""")


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_import_runtime_without_torch():
    result = run_blocked("""
        import runtime, runtime.errors
        import sys
        assert 'torch' not in sys.modules and 'transformers' not in sys.modules
        print('ok')
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_blocker_really_blocks_torch():
    result = run_blocked("import torch")
    assert result.returncode != 0 and "blocked for this test" in result.stderr


def test_runtime_modules_and_cli_work_without_torch(tmp_path):
    from exporter.export import export
    from tests.conftest import FIXTURE

    artifact = export(None, tmp_path / "digits")
    sample = sorted((FIXTURE / "samples").glob("*.wav"))[0]
    result = run_blocked(f"""
        import runtime.audio, runtime.decode, runtime.features, runtime.audio_runner, runtime.session
        import runtime.tokenizer, runtime.processor, runtime.pipelines, runtime.timestamps, runtime.subtitles
        from runtime import Processor, pipeline
        asr = pipeline('automatic-speech-recognition', model={str(artifact)!r})
        assert asr({str(sample)!r}, return_timestamps='word')['chunks']
        assert Processor.from_pretrained({str(artifact)!r})(text='four')['input_ids'].shape == (1, 4)
        from click.testing import CliRunner
        from exporter.cli import main
        srt = CliRunner().invoke(main, ['-q', 'transcribe', {str(artifact)!r}, {str(sample)!r}, '--format', 'srt'])
        assert srt.exit_code == 0 and ' --> ' in srt.output, srt.output
        out = CliRunner().invoke(main, ['-q', 'transcribe', {str(artifact)!r}, {str(sample)!r}])
        assert out.exit_code == 0, out.output
        out2 = CliRunner().invoke(main, ['inspect', {str(artifact)!r}])
        assert out2.exit_code == 0, out2.output
        import sys
        assert 'torch' not in sys.modules
        print(out.stdout.strip())
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split("\\t")[-1]  # a transcript was printed


def test_error_types_alone_load_neither_session_nor_front_end():
    # exporter modules import runtime.errors (and so the runtime package) everywhere: that must stay cheap.
    result = run_blocked("""
        import sys
        import exporter.plan, exporter.artifact, exporter.quantize.gates, exporter.cli
        import runtime
        from runtime.errors import InputError
        assert runtime.InputError is InputError
        loaded = [m for m in ('runtime.session', 'runtime.features', 'onnxruntime', 'torch') if m in sys.modules]
        assert not loaded, loaded
        assert runtime.Session.__module__ == 'runtime.session'  # and the lazy names still resolve
        print('ok')
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
