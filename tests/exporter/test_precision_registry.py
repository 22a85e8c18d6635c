"""A precision is one row of runtime.precisions plus its converter: a test-only precision added that
way is planned, built, gated, hashed in the manifest, re-checked by verify and run by the Session,
with no other change anywhere."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from exporter.cli import main
from exporter.model.sources import BUNDLED
from runtime import Session
from runtime.audio import load_audio
from runtime.precisions import PRECISIONS, Precision, _frozen

SAMPLES = sorted((BUNDLED / "samples").glob("*.wav"))


@pytest.fixture
def copy_precision(monkeypatch):
    """'fp32copy': the fp32 graph as it is, through the whole machinery of a reduced precision."""
    from exporter.quantize import convert

    built = []

    def build(src, dst, job):
        built.append((src.name, job.exclude))
        shutil.copyfile(src, dst)

    row = Precision("fp32copy", "the fp32 graph again", ("ort",), "ORT CPU", converter="copy", tolerance=1e-3,
                    gate=_frozen(min_cosine=0.999, min_agreement=0.99, max_cer=0.1), cpu_form=True)
    monkeypatch.setitem(PRECISIONS, "fp32copy", row)
    monkeypatch.setitem(convert.CONVERTERS, "copy",
                        convert.Converter(build, record=lambda job, options: {"copied": True}))
    return built


def test_a_new_row_and_converter_are_all_a_precision_needs(copy_precision, tmp_path):
    out = tmp_path / "art"
    result = CliRunner().invoke(main, ["export", "-o", str(out), "--precision", "fp32,fp32copy",
                                       "--gate", "fp32copy.max_cer=0.5"])
    assert result.exit_code == 0, result.output
    assert copy_precision == [("model.fp32.onnx", [])]  # built once, from the checked fp32 file
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["variants"]["fp32copy"]
    assert entry["file"] == "model.fp32copy.onnx" and entry["precision"] == "fp32copy" and entry["copied"] is True
    assert entry["gate"]["passed"] and entry["gate"]["thresholds"] == {"min_cosine": 0.999, "min_agreement": 0.99,
                                                                     "max_cer": 0.5, "max_scaled_error": 1e-3}
    assert entry["gate"]["metrics"]["cer"] == 0.0 and "model.fp32copy.onnx" in manifest["files"]
    verify = CliRunner().invoke(main, ["verify", str(out), "--precision", "fp32copy"])
    assert verify.exit_code == 0 and "fp32copy gate ok" in verify.output, verify.output
    waves = [load_audio(p) for p in SAMPLES]
    assert Session(out, precision="fp32copy").transcribe(waves) == Session(out).transcribe(waves)


def test_a_precision_the_registry_lacks_is_refused_everywhere(tmp_path):
    result = CliRunner().invoke(main, ["export", "-o", str(tmp_path / "a"), "--precision", "fp32,fp32copy"])
    assert result.exit_code == 2 and "precision 'fp32copy' is unknown" in result.output
    result = CliRunner().invoke(main, ["export", "-o", str(tmp_path / "a"), "--gate", "fp32copy.max_cer=1"])
    assert result.exit_code == 2 and "gate override 'fp32copy.max_cer=1'" in result.output
