"""The five heads and what the rest of the package needs to know of each (no torch).

A new head is a row here plus its module in exporter/model/heads.py. Everything else --
config.json's `architectures`, the manifest's interface, the traced graph's dynamic axes,
the accuracy gate's metrics, the CLI's --head choices -- reads this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Head:
    name: str  # as used across the package and the CLI
    architecture: str  # the transformers class named in config.json `architectures`
    outputs: tuple[str, ...]  # ONNX / reference output names, in order
    main_output: str  # the output the accuracy gate judges
    per_frame: bool  # outputs carry a frames axis (cut to each utterance's real output frames)
    argmax: bool  # outputs are class scores: the gate counts argmax agreement
    transcripts: bool  # CTC: the gate compares greedy transcripts (CER)
    labels: bool  # the manifest carries id2label


HEADS: dict[str, Head] = {h.name: h for h in (
    Head("Model", "Wav2Vec2BertModel", ("last_hidden_state",), "last_hidden_state",
         per_frame=True, argmax=False, transcripts=False, labels=False),
    Head("CTC", "Wav2Vec2BertForCTC", ("logits",), "logits",
         per_frame=True, argmax=True, transcripts=True, labels=False),
    Head("SequenceClassification", "Wav2Vec2BertForSequenceClassification", ("logits",), "logits",
         per_frame=False, argmax=True, transcripts=False, labels=True),
    Head("AudioFrameClassification", "Wav2Vec2BertForAudioFrameClassification", ("logits",), "logits",
         per_frame=True, argmax=True, transcripts=False, labels=True),
    Head("XVector", "Wav2Vec2BertForXVector", ("logits", "embeddings"), "embeddings",
         per_frame=False, argmax=False, transcripts=False, labels=False),
)}
HEAD_NAMES = tuple(HEADS)
ARCHITECTURES = {h.architecture: h.name for h in HEADS.values()}  # config.json name -> head name
OUTPUT_NAMES = {h.name: h.outputs for h in HEADS.values()}


def output_shapes(head: str, config: dict[str, Any]) -> dict[str, list]:
    """Symbolic shape of every output of `head` for `config` (a W2VBertConfig.to_dict())."""
    adapter = config.get("add_adapter")
    out_frames = "output_frames" if adapter else "frames"
    width = config["output_hidden_size"] if adapter else config["hidden_size"]
    return {
        "Model": {"last_hidden_state": ["batch", out_frames, width]},
        "CTC": {"logits": ["batch", out_frames, config["vocab_size"]]},
        "SequenceClassification": {"logits": ["batch", config["num_labels"]]},
        "AudioFrameClassification": {"logits": ["batch", "frames", config["num_labels"]]},
        "XVector": {"logits": ["batch", config["xvector_output_dim"]],
                    "embeddings": ["batch", config["xvector_output_dim"]]},
    }[head]
