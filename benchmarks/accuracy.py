"""Task accuracy (CER / WER) of the bundled CTC model, per backend, on held-out synthetic speech.

    python -m benchmarks.accuracy [--per-set 150] [--out benchmarks/results/accuracy.md]

The held-out set is synthesised like the training set (espeak-ng, see
exporter/data/make_fixture.py) with other seeds: new sentences from the
10 training voices, and sentences from 3 voices never used in training.
Backends: the PyTorch reference, transformers (when installed), and every
variant of a fresh export of the bundled model (every precision of runtime.precisions).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime.decode import error_rates
from runtime.precisions import PRECISIONS as REGISTRY


def held_out_sets(per_set: int):
    from exporter.data.make_fixture import HELD_OUT_VOICES, TRAIN_VOICES, make_set, render

    sets = {"seen voices, new sentences": make_set(per_set, TRAIN_VOICES, seed=99),
            "unseen voices": make_set(per_set, HELD_OUT_VOICES, seed=100)}
    return {name: (render(specs), [s["text"] for s in specs]) for name, specs in sets.items()}


def reference_backend(batch_size: int):
    import torch

    from exporter.model.checkpoint import load_model
    from exporter.model.conformer import conv_output_lengths
    from exporter.model.sources import BUNDLED
    from runtime.features import FeatureExtractor
    from runtime.tokenizer import CTCTokenizer

    model, extractor, decoder = load_model(None), FeatureExtractor(), CTCTokenizer.from_dir(BUNDLED)

    def run(waves):
        texts = []
        for i in range(0, len(waves), batch_size):
            x, mask = extractor(waves[i:i + batch_size])
            with torch.no_grad():
                logits = model(torch.from_numpy(x), torch.from_numpy(mask))["logits"].numpy()
            lengths = conv_output_lengths(torch.from_numpy(mask).sum(1), model.config).tolist()
            texts += decoder.decode_logits(logits, lengths)
        return texts
    return run


def transformers_backend(batch_size: int):
    import torch
    import transformers

    from exporter.model.sources import BUNDLED

    model = transformers.Wav2Vec2BertForCTC.from_pretrained(str(BUNDLED)).eval()
    extractor = transformers.SeamlessM4TFeatureExtractor.from_pretrained(str(BUNDLED))
    tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(BUNDLED))

    def run(waves):
        texts = []
        for i in range(0, len(waves), batch_size):
            batch = extractor(waves[i:i + batch_size], sampling_rate=16000, padding=True, return_tensors="pt")
            with torch.no_grad():
                logits = model(**batch).logits
            lengths = model._get_feat_extract_output_lengths(batch["attention_mask"].sum(-1))
            texts += tokenizer.batch_decode([r[:n].argmax(-1).tolist() for r, n in zip(logits, lengths)])
        return texts
    return run


def session_backend(artifact: Path, precision: str, batch_size: int, provider: str = "cpu"):
    from runtime import Session

    session = Session(artifact, precision=precision, provider=provider)
    if session.with_frontend:
        from runtime.tokenizer import CTCTokenizer

        decoder = CTCTokenizer.from_dir(artifact)

        def run_raw(waves):
            texts = []
            for i in range(0, len(waves), batch_size):
                chunk = waves[i:i + batch_size]
                lengths = np.array([len(w) for w in chunk])
                batch = np.zeros((len(chunk), lengths.max()), np.float32)
                for k, w in enumerate(chunk):
                    batch[k, :len(w)] = w
                out = session.run_frontend(batch, lengths)
                texts += decoder.decode_logits(out["logits"], out["output_lengths"])
            return texts
        return run_raw
    return lambda waves: session.transcribe(waves, batch_size=batch_size)


PRECISIONS = tuple(REGISTRY)
ENGINES = {"cpu": "onnxruntime", "openvino": "OpenVINO"}  # the Session providers each variant is run on
# the bound on the CER change (absolute, percent) against the fp32 variant: each precision's gate
CER_BOUNDS = {name: p.gate["max_cer"] for name, p in REGISTRY.items() if "max_cer" in p.gate}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="CER/WER of the bundled CTC model per backend")
    parser.add_argument("--per-set", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.md"))
    args = parser.parse_args(argv)

    from exporter.export import export
    from runtime.manifest import load_manifest

    started = time.time()
    sets = held_out_sets(args.per_set)
    tmp = Path(tempfile.mkdtemp(prefix="w2vbert-accuracy-"))
    artifact = export(None, tmp / "digits", with_frontend=True, precisions=exportable())
    backends = {"PyTorch reference (exporter.load_model)": reference_backend(args.batch_size)}
    try:
        backends["transformers PyTorch (Wav2Vec2BertForCTC)"] = transformers_backend(args.batch_size)
    except ImportError:
        print("transformers not installed: its row is skipped")
    for precision in load_manifest(artifact).data["variants"]:
        for provider in providers_of(precision):
            backends[f"{ENGINES[provider]} {precision} (runtime.Session)"] = session_backend(
                artifact, precision, args.batch_size, provider)
    rows = []
    for name, run in backends.items():
        cells = []
        for waves, texts in sets.values():
            cells.append(error_rates(run(waves), texts))
        rows.append((name, cells))
        print(name, cells, flush=True)
    write_report(args, rows, sets, time.time() - started)
    print(precision_table(rows, list(sets)))


def exportable() -> tuple[str, ...]:
    """Every precision this machine can build: bf16 needs openvino and a CPU with bf16 units."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return tuple(p for p in PRECISIONS if REGISTRY[p].onnxruntime)
    from runtime.openvino_runner import has_bf16

    return tuple(p for p in PRECISIONS if REGISTRY[p].onnxruntime or has_bf16())


def providers_of(precision: str) -> list[str]:
    """The Session providers a variant is measured on here: the engines its row names, where installed (the
    raw-audio variant: onnxruntime only, its OpenVINO run being fp32's graph behind the same front end)."""
    import importlib.util

    row = REGISTRY.get(precision)
    if row is None:
        return ["cpu"]
    ov = row.openvino and importlib.util.find_spec("openvino") is not None
    return (["cpu"] if row.onnxruntime else []) + (["openvino"] if ov else [])


def precision_table(rows, set_names) -> str:
    """CER change of each reduced precision (per engine) against the fp32 variant on onnxruntime, checked
    against CER_BOUNDS."""
    cer = {_variant(name): [c for c, _ in cells] for name, cells in rows if name.endswith("(runtime.Session)")}
    lines = ["| variant | " + " | ".join(f"CER change, {n}" for n in set_names) + " | bound | within |",
             "|---|" + "---:|" * len(set_names) + "---:|---|"]
    for variant, cells in cer.items():
        precision = variant.split()[0]
        if variant in ("fp32", "fp32-frontend"):
            continue
        deltas = [c - f for c, f in zip(cells, cer["fp32"])]
        bound = CER_BOUNDS.get(precision)
        within = "-" if bound is None else ("yes" if all(abs(d) <= bound for d in deltas) else "NO")
        lines.append(f"| {variant} | " + " | ".join(f"{d:+.2f}" for d in deltas)
                     + f" | {'-' if bound is None else f'{bound:.1f}'} | {within} |")
    return "\n".join(lines)


def _variant(name: str) -> str:
    """'onnxruntime int8 (runtime.Session)' -> 'int8'; 'OpenVINO int8-qdq (...)' -> 'int8-qdq on OpenVINO'."""
    engine, precision = name.split()[:2]
    return precision if engine == "onnxruntime" else f"{precision} on {engine}"


def write_report(args, rows, sets, seconds: float) -> None:
    from .study import write_study

    names = list(sets)
    lines = ["# Task accuracy of the bundled model (`w2vbert-digits`, CTC)", "",
             f"Command: `python -m benchmarks.accuracy --per-set {args.per_set}` "
             f"({seconds:.0f} s on this machine).", "",
             f"Held-out synthetic speech, {args.per_set} utterances per set (1-4 words each, espeak-ng, "
             "noise at 20-40 dB SNR); greedy CTC decoding; CER/WER in percent over each set.", "",
             "| backend | " + " | ".join(f"CER {n}" for n in names) + " | "
             + " | ".join(f"WER {n}" for n in names) + " |",
             "|---|" + "---:|" * (2 * len(names))]
    for name, cells in rows:
        lines.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c, _ in cells) + " | "
                     + " | ".join(f"{w:.2f}" for _, w in cells) + " |")
    lines += ["", "Reduced precisions against the fp32 variant (percentage points; the bound is each precision's "
              "gate, runtime.precisions):", "", precision_table(rows, names)]
    write_study(args.out, lines, echo=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
