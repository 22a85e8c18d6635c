"""CTC vocabulary: text -> ids and ids (or logits) -> text with character and word offsets.

``CTCTokenizer`` gives what ``transformers.Wav2Vec2CTCTokenizer`` gives, read from the same
files (vocab.json, tokenizer_config.json, special_tokens_map.json, added_tokens.json), with
numpy only. What transformers does, and so what this does:

* encoding splits the text on the vocabulary's multi-character tokens first (``<unk>`` in a
  sentence is one id; spaces next to it are dropped), upper-cases the rest when
  ``do_lower_case`` (the vocabulary is upper case then), maps " " to the word delimiter and
  every other character to its id or to ``<unk>``; no special tokens are added;
* decoding drops special tokens *before* collapsing repeats when ``skip_special_tokens``, so
  offsets count only the frames left; offsets are in output frames, ``end_offset`` exclusive.
"""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

import numpy as np

from .errors import ArtifactError, InputError

FILES = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")
CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class DecodeOutput(dict):
    """``text`` with ``char_offsets`` / ``word_offsets`` (lists of dicts), by key or attribute, as
    transformers' Wav2Vec2CTCTokenizerOutput: an offset list not asked for is None and no key."""

    def __getattr__(self, name: str):
        if name in ("text", "char_offsets", "word_offsets"):
            return self.get(name)
        raise AttributeError(name)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc


def _content(spec) -> str:
    return spec["content"] if isinstance(spec, dict) else spec


class CTCTokenizer:
    def __init__(self, vocab: dict[str, int], pad_token: str = "<pad>", word_delimiter_token: str = "|",
                 replace_word_delimiter_char: str = " ", do_lower_case: bool = False,
                 clean_up_tokenization_spaces: bool = False, bos_token: str = "<s>", eos_token: str = "</s>",
                 unk_token: str = "<unk>", added: dict[str, tuple[bool, bool]] | None = None):
        self.vocab = {str(t): int(i) for t, i in vocab.items()}
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.pad_token, self.bos_token, self.eos_token, self.unk_token = pad_token, bos_token, eos_token, unk_token
        self.word_delimiter_token = word_delimiter_token
        self.replace_word_delimiter_char = replace_word_delimiter_char
        self.do_lower_case = bool(do_lower_case)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.special_tokens = {pad_token, bos_token, eos_token, unk_token}
        self.base_vocab = dict(self.vocab)  # vocab.json's part (from_dir: without the added tokens)
        self.extra_special: list[str] = []
        # token -> (lstrip, rstrip): multi-character vocabulary tokens strip the spaces around them
        # (transformers adds them so), added tokens keep the flags they were saved with
        self.added = {t: (True, True) for t in self.vocab if len(t) > 1 and t not in (added or {})}
        self.added.update(added or {})
        self.normalized: dict[str, bool] = {}  # added tokens' "normalized" flag, kept for save() to write back
        self.flagged_special: set[str] = set()  # added tokens saved with "special": true

    @classmethod
    def from_dir(cls, root: str | Path) -> "CTCTokenizer":
        root = Path(root)
        if not (root / "vocab.json").is_file():
            raise ArtifactError(f"no vocab.json in {root}: a CTC artifact needs the checkpoint's tokenizer "
                                "files to turn logits into text")
        vocab = _read_json(root / "vocab.json")
        if vocab and all(isinstance(v, dict) for v in vocab.values()):
            raise ArtifactError(f"{root / 'vocab.json'} is a multi-language vocabulary; pick one language")
        options, added, extra_special, normalized, decoder, flagged = {}, {}, set(), {}, False, set()
        base = set(vocab)
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (root / name).is_file():
                config = _read_json(root / name)
                options.update({k: _content(config[k]) for k in (
                    *SPECIAL_NAMES, "word_delimiter_token", "replace_word_delimiter_char", "do_lower_case",
                    "clean_up_tokenization_spaces") if config.get(k) is not None})
                for key in ("additional_special_tokens", "extra_special_tokens"):
                    extra_special.update(_content(t) for t in config.get(key) or [])
                decoder = decoder or "added_tokens_decoder" in config
                for index, spec in config.get("added_tokens_decoder", {}).items():
                    token = _content(spec)
                    vocab.setdefault(token, int(index))
                    if isinstance(spec, dict):  # transformers keeps the flags it saved
                        added[token] = (bool(spec.get("lstrip")), bool(spec.get("rstrip")))
                        normalized[token] = bool(spec.get("normalized"))
                        if spec.get("special"):  # written back by save(); skipped in decoding only when
                            flagged.add(token)  # a special-token list names it, as in transformers
        # added_tokens.json is the older record: transformers reads it only without an added_tokens_decoder
        if not decoder and (root / "added_tokens.json").is_file():
            extra = _read_json(root / "added_tokens.json")
            # added later through add_tokens(str): transformers never strips around those
            added.update({t: (False, False) for t in extra if t not in base and t not in added})
            vocab.update(extra)
        try:
            tokenizer = cls({t: int(i) for t, i in vocab.items()}, added=added, **options)
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"the tokenizer files in {root} are not a CTC vocabulary: {exc}") from exc
        tokenizer.base_vocab = {t: i for t, i in tokenizer.vocab.items() if t in base}
        tokenizer.special_tokens |= extra_special
        tokenizer.extra_special = sorted(extra_special)
        tokenizer.normalized = normalized
        tokenizer.flagged_special = flagged
        return tokenizer

    def save(self, directory: Path) -> list[Path]:
        """Write vocab.json, tokenizer_config.json and special_tokens_map.json (what transformers reads)."""
        specials = {"bos_token": self.bos_token, "eos_token": self.eos_token, "unk_token": self.unk_token,
                    "pad_token": self.pad_token}
        config = {"tokenizer_class": "Wav2Vec2CTCTokenizer", **specials,
                  "word_delimiter_token": self.word_delimiter_token,
                  "replace_word_delimiter_char": self.replace_word_delimiter_char,
                  "do_lower_case": self.do_lower_case,
                  "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces}
        extra = {t: i for t, i in self.vocab.items() if t not in self.base_vocab}
        if extra:
            strips = {t: self.added.get(t, (False, False)) for t in extra}
            config["added_tokens_decoder"] = {str(i): {
                "content": t, "lstrip": strips[t][0], "rstrip": strips[t][1],
                "normalized": self.normalized.get(t, False), "single_word": False,
                "special": t in self.extra_special or t in self.flagged_special} for t, i in extra.items()}
        if self.extra_special:
            config["extra_special_tokens"] = list(self.extra_special)
        written = []
        for name, data in (("vocab.json", self.base_vocab), ("tokenizer_config.json", config),
                           ("special_tokens_map.json", specials)):
            path = directory / name
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            written.append(path)
        return written

    @property
    def pad_token_id(self) -> int:
        return self.vocab[self.pad_token]

    # ------------------------------------------------------------------ encoding
    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise InputError(f"text must be a string, got {type(text).__name__}")
        unk = self.vocab.get(self.unk_token)
        ids = []
        for piece, is_token in self._split_added(text):
            if is_token:
                ids.append(self.vocab[piece])
                continue
            piece = piece.upper() if self.do_lower_case else piece
            ids.extend(self.vocab.get(c, unk) for c in piece.replace(" ", self.word_delimiter_token))
        if None in ids:
            raise InputError(f"text {text!r} has characters outside the vocabulary and it has no unk token")
        return ids

    def _split_added(self, text: str) -> list[tuple[str, bool]]:
        """(piece, is_added_token): leftmost-longest matches of the added tokens, spaces stripped around them."""
        tokens = sorted(self.added, key=len, reverse=True)
        pieces, start, i = [], 0, 0
        while i < len(text):
            match = next((t for t in tokens if text.startswith(t, i)), None)
            if match is None:
                i += 1
                continue
            lstrip, rstrip = self.added[match]
            before = text[start:i]
            pieces.append((before.rstrip() if lstrip else before, False))
            pieces.append((match, True))
            i = start = i + len(match)
            if rstrip:
                while i < len(text) and text[i].isspace():
                    i += 1
                start = i
        pieces.append((text[start:], False))
        return [(p, is_token) for p, is_token in pieces if p]

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               output_char_offsets: bool = False, output_word_offsets: bool = False, group_tokens: bool = True,
               spaces_between_special_tokens: bool = False):
        """One sequence of ids (or (frames, vocab) logits: argmax per frame) -> text, or a DecodeOutput
        with offsets in output frames when output_char_offsets / output_word_offsets."""
        ids = _as_ids(token_ids)
        tokens = [self.id_to_token.get(i, self.unk_token) for i in ids]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self.special_tokens or t == self.word_delimiter_token]
        if group_tokens:
            runs = [(t, len(list(run))) for t, run in groupby(tokens)]
        else:
            runs = [(t, 1) for t in tokens]
        ends = np.cumsum([n for _, n in runs], dtype=np.int64).tolist()
        chars = []  # (char, start, end) without blanks, the delimiter replaced
        for (token, n), end in zip(runs, ends):
            if token != self.pad_token:
                char = self.replace_word_delimiter_char if token == self.word_delimiter_token else token
                chars.append((char, end - n, end))
        text = (" " if spaces_between_special_tokens else "").join(c for c, _, _ in chars).strip()
        if self.do_lower_case:
            text = text.lower()
        clean = clean_up_tokenization_spaces
        if clean is None:
            clean = self.clean_up_tokenization_spaces
        if clean:
            for before, after in CLEAN_UP:
                text = text.replace(before, after)
        if not (output_char_offsets or output_word_offsets):
            return text
        out = DecodeOutput(text=text)
        if not tokens:  # transformers answers both lists, empty, whichever was asked for
            return DecodeOutput(text=text, char_offsets=[], word_offsets=[])
        offsets = [{"char": c, "start_offset": s, "end_offset": e} for c, s, e in chars]
        if output_char_offsets:
            out["char_offsets"] = offsets
        if output_word_offsets:
            out["word_offsets"] = word_offsets(offsets, self.replace_word_delimiter_char)
        return out

    def batch_decode(self, sequences, **options):
        """Many sequences (a list of id lists, a (B, T) id array or (B, T, V) logits) -> a list of texts,
        or one DecodeOutput of lists when offsets are asked for (as transformers)."""
        sequences = _from_torch(sequences)
        if np.isscalar(sequences) or (isinstance(sequences, np.ndarray) and sequences.ndim < 2):
            raise InputError(f"batch_decode takes a list of id sequences (or (batch, frames, vocab) logits), got "
                             f"{type(sequences).__name__}; use decode for one sequence")
        if isinstance(sequences, np.ndarray) and sequences.dtype.kind == "f":
            if sequences.ndim != 3:
                raise InputError(f"logits for batch_decode must be (batch, frames, vocab), got shape {sequences.shape}")
            sequences = sequences.argmax(axis=-1)
        decoded = [self.decode(seq, **options) for seq in sequences]
        if options.get("output_char_offsets") or options.get("output_word_offsets"):
            return DecodeOutput({key: [d.get(key) for d in decoded] for key in decoded[0]} if decoded else {})
        return decoded

    def decode_logits(self, logits: np.ndarray, lengths=None) -> list[str]:
        """Greedy decoding of (B, T, V) logits; `lengths` limits each row to its real output frames."""
        if logits.ndim != 3:
            raise InputError(f"CTC logits must be (batch, frames, vocab), got shape {logits.shape}")
        ids = logits.argmax(axis=-1)
        lengths = [ids.shape[1]] * len(ids) if lengths is None else lengths
        return [self.decode(row[:int(n)]) for row, n in zip(ids, lengths)]


def word_offsets(char_offsets: list[dict], delimiter: str = " ") -> list[dict]:
    """Character offsets -> {"word", "start_offset", "end_offset"}: runs of non-delimiter characters."""
    words = []
    for is_space, run in groupby(char_offsets, key=lambda c: c["char"] == delimiter):
        if not is_space:
            run = list(run)
            words.append({"word": "".join(c["char"] for c in run), "start_offset": run[0]["start_offset"],
                          "end_offset": run[-1]["end_offset"]})
    return words


def _from_torch(value):
    """A torch tensor (torch is never imported here) as numpy, from any device, dtype or grad; others as given."""
    if not hasattr(value, "detach"):
        return value
    value = value.detach().cpu()
    return (value.float() if value.is_floating_point() else value).numpy()


def _as_ids(token_ids) -> list[int]:
    """One sequence of ids as ints; float logits (frames, vocab) -> argmax per frame."""
    token_ids = _from_torch(token_ids)
    try:
        array = np.asarray(token_ids)
    except ValueError as exc:  # ragged nested lists
        raise InputError(f"decode takes one sequence of token ids, got {type(token_ids).__name__}: {exc}") from exc
    if array.size == 0:
        return []
    if array.dtype.kind == "f" and array.ndim == 1 and np.all(array == np.round(array)):
        array = array.astype(np.int64)  # ids given as floats, as transformers accepts
    if array.dtype.kind == "f":
        if array.ndim != 2:
            raise InputError(f"logits for decode must be (frames, vocab), got shape {array.shape}")
        array = array.argmax(axis=-1)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise InputError(f"decode takes one sequence of token ids (or (frames, vocab) logits), got an array of "
                         f"shape {array.shape} and dtype {array.dtype}")
    return [int(i) for i in array]
