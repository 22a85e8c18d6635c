"""`w2vbert inspect`: an artifact's manifest, as a summary or as JSON (runtime only, no torch)."""

from __future__ import annotations

import json

import click

from runtime.errors import ArtifactError
from runtime.manifest import CPU_FORM, load_manifest
from runtime.precisions import engines_of, variant_row

from ..machine import describe


def inspect_artifact(path, as_json: bool = False) -> None:
    """Print the manifest (every listed file must exist: sizes and names, not sha256, are checked)."""
    manifest = load_manifest(path)
    missing = [name for name in manifest.data.get("files", {}) if not (manifest.root / name).is_file()]
    if missing:
        raise ArtifactError(f"artifact {manifest.root} is missing {', '.join(missing)} (listed in its manifest)")
    if as_json:
        click.echo(json.dumps(manifest.data, indent=2))
    else:
        print_summary(manifest)


def print_summary(manifest) -> None:
    """The manifest of an artifact as `w2vbert inspect` prints it."""
    data, config = manifest.data, manifest.config
    click.echo(f"artifact   {manifest.root}")
    click.echo(f"head       {data['head']}   source {data.get('source')}   opset {data.get('opset')}")
    click.echo(f"model      {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
               f"{config['num_attention_heads']} heads, position {config['position_embeddings_type']}, "
               f"adapter {'yes' if config['add_adapter'] else 'no'}")
    for spec in data["inputs"]:
        click.echo(f"input      {spec['name']:<18} {spec['dtype']:<8} {spec['shape']}")
    for spec in data["outputs"]:
        click.echo(f"output     {spec['name']:<18} {spec['dtype']:<8} {spec['shape']}")
    click.echo(f"lengths    {data.get('output_length_formula')}; min frames {data.get('min_frames')}")
    for precision, variant in data["variants"].items():
        size = sum(data["files"][f]["bytes"] for f in variant["files"]) / 1e6
        if "gate" in variant:
            metrics = variant["gate"]["metrics"]
            check = "gate " + ", ".join(f"{k} {metrics[k]:.4g}" for k in ("cosine", "agreement", "cer")
                                        if k in metrics)
            if variant.get("kept_fp32"):
                check += f", {len(variant['kept_fp32'])} MatMuls kept fp32"
        else:
            check = "max abs err: " + ", ".join(f"{k} {v['max_abs']:.1e}" for k, v in variant.get("parity", {}).items())
        click.echo(f"variant    {precision:<8} {variant['file']:<22} {size:9.1f} MB  target {variant['target']}"
                   f"  {check}  runs on {_engines(precision)}")
        if CPU_FORM in variant:
            form = variant[CPU_FORM]
            extra = sum(data["files"][f]["bytes"] for f in form["files"] if f not in variant["files"]) / 1e6
            click.echo(f"  cpu form {form['file']:<31} +{extra:8.1f} MB  Add + LayerNormalization for the CPU provider")
    for precision, entry in data.get("engines", {}).items():
        p = entry["profile"]
        click.echo(f"engine     {precision:<8} {entry['file']:<22} TensorRT {entry['tensorrt']} on {entry['gpu']} "
                   f"(sm {entry['compute_capability']}); batch {p['min_batch']}..{p['max_batch']}, "
                   f"frames {p['min_frames']}..{p['max_frames']}")
    versions = ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items())
    click.echo(f"versions   {versions}")
    if data.get("machine"):  # the gate figures were measured with this CPU's int8 kernel
        click.echo(f"exported   on {describe(data['machine'])}")


def _engines(precision: str) -> str:
    """Which engines load a variant (its precision's row)."""
    row = variant_row(precision)
    bf16 = row is not None and row.openvino_hint == "bf16"
    return " + ".join(engines_of(precision)) + (" (bf16 CPUs)" if bf16 else "")
