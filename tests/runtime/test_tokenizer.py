"""runtime.tokenizer.CTCTokenizer against transformers' Wav2Vec2CTCTokenizer on the bundled vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import InputError
from runtime.tokenizer import CTCTokenizer, DecodeOutput
from tests.conftest import FIXTURE

OPTIONS = [
    {},
    {"skip_special_tokens": True},
    {"group_tokens": False},
    {"output_char_offsets": True},
    {"output_word_offsets": True},
    {"output_char_offsets": True, "output_word_offsets": True, "skip_special_tokens": True},
    {"output_word_offsets": True, "group_tokens": False},
    {"spaces_between_special_tokens": True, "clean_up_tokenization_spaces": True},
]


@pytest.fixture(scope="module")
def theirs():
    transformers = pytest.importorskip("transformers")
    return transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(FIXTURE))


@pytest.fixture(scope="module")
def ours():
    return CTCTokenizer.from_dir(FIXTURE)


def random_ids(count: int, seed: int = 0) -> list[list[int]]:
    """Frame id sequences with runs of repeats, blanks (0), delimiters (4), specials (1-3) and unknown ids."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        length = int(rng.integers(0, 30))
        row = rng.choice(26, size=length, p=None)  # 24, 25: ids outside the vocabulary
        row = np.repeat(row, rng.integers(1, 4, size=length))
        rows.append(row.tolist())
    return rows


def plain(out):
    """transformers' ModelOutput / our DecodeOutput -> a dict of plain Python values."""
    if isinstance(out, str):
        return out
    return {k: [{kk: (int(vv) if kk.endswith("offset") else vv) for kk, vv in d.items()} for d in v]
            if isinstance(v, list) else v for k, v in dict(out).items()}


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_decode_equals_transformers_on_random_ids(theirs, ours, options):
    for row in random_ids(150):
        assert plain(ours.decode(row, **options)) == plain(theirs.decode(row, **options)), row


@pytest.mark.parametrize("options", OPTIONS[:5], ids=lambda o: ",".join(o) or "defaults")
def test_batch_decode_equals_transformers(theirs, ours, options):
    rows = random_ids(40, seed=1)
    mine, hf = ours.batch_decode(rows, **options), theirs.batch_decode(rows, **options)
    if isinstance(hf, list):
        assert mine == hf
    else:
        assert sorted(mine) == sorted(hf)
        for key in hf:
            assert [plain({key: v})[key] if isinstance(v, list) else v for v in mine[key]] == \
                   [plain({key: v})[key] if isinstance(v, list) else v for v in hf[key]]


def test_offsets_of_a_known_sequence(ours):
    # h o o | o <s> | e  -> words "ho" frames 0-3, "o<s>" 4-6, "e" 7-8 (end exclusive)
    out = ours.decode([9, 13, 13, 4, 13, 1, 4, 6], output_word_offsets=True)
    assert isinstance(out, DecodeOutput) and out.char_offsets is None
    assert out.text == "ho o<s> e"
    assert out.word_offsets == [{"word": "ho", "start_offset": 0, "end_offset": 3},
                                {"word": "o<s>", "start_offset": 4, "end_offset": 6},
                                {"word": "e", "start_offset": 7, "end_offset": 8}]
    assert ours.decode([0, 5, 5, 0, 5, 4, 4, 6, 1, 2, 3, 0]) == "dd e<s></s><unk>"
    # skip_special_tokens drops the blank before repeats collapse (transformers does so): "d d" merges.
    # That is why the ASR pipeline decodes with the special tokens kept.
    assert ours.decode([0, 5, 5, 0, 5, 4, 4, 6, 1, 2, 3, 0], skip_special_tokens=True) == "d e"


def test_logits_decode_as_their_argmax(theirs, ours):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((3, 40, 24)).astype(np.float32)
    ids = logits.argmax(-1)
    assert ours.batch_decode(logits) == theirs.batch_decode(ids.tolist())
    assert plain(ours.decode(logits[0], output_word_offsets=True)) == \
           plain(theirs.decode(ids[0].tolist(), output_word_offsets=True))


def test_real_logits_of_the_bundled_model(theirs, ours):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from runtime.audio import load_audio

    model = transformers.Wav2Vec2BertForCTC.from_pretrained(str(FIXTURE)).eval()
    extractor = transformers.SeamlessM4TFeatureExtractor.from_pretrained(str(FIXTURE))
    waves = [load_audio(p) for p in sorted((FIXTURE / "samples").glob("*.wav"))]
    batch = extractor(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        ids = model(**batch).logits.argmax(-1).numpy()
    for options in OPTIONS:
        for row in ids:
            assert plain(ours.decode(row, **options)) == plain(theirs.decode(row.tolist(), **options))


TEXTS = ["four up one", "Four UP <unk> x?", "  two  go ", "seven|eight", "<s>three</s>", "<unk><unk>", "",
         "left <pad>  no", "ünïcode ß", "a\tb\nc", "<un k>", "six  <s>  ", "nine<unk>ten"]


def test_encode_equals_transformers(theirs, ours):
    rng = np.random.default_rng(5)
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABCXYZ|?") + ["<s>", "</s>", "<unk>", "<pad>", "  "]
    texts = TEXTS + ["".join(rng.choice(alphabet, size=int(rng.integers(0, 25)))) for _ in range(300)]
    for text in texts:
        assert ours.encode(text) == theirs(text)["input_ids"], repr(text)


def test_lower_case_vocabularies_upper_case_the_text(tmp_path, theirs):
    transformers = pytest.importorskip("transformers")
    import json

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("ABCDEFG'")}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    options = {"do_lower_case": True, "clean_up_tokenization_spaces": True}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(options))
    hf = transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(tmp_path))
    mine = CTCTokenizer.from_dir(tmp_path)
    for text in ["abc def", "Bad 'cafe' ?", "g<unk>A"]:
        assert mine.encode(text) == hf(text)["input_ids"]
    for row in random_ids(100, seed=9):
        row = [i % 13 for i in row]
        assert plain(mine.decode(row, output_char_offsets=True)) == plain(hf.decode(row, output_char_offsets=True))
        assert mine.decode(row) == hf.decode(row)


def test_bad_decode_inputs(ours):
    with pytest.raises(InputError, match=r"\(frames, vocab\) logits"):
        ours.decode(np.zeros((2, 3), np.int64))
    with pytest.raises(InputError, match=r"logits for decode must be \(frames, vocab\)"):
        ours.decode(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(InputError, match="text must be a string"):
        ours.encode(["a"])


def _settings(hf) -> dict:
    """What a transformers CTC tokenizer was loaded with: options, specials and every added token's flags."""
    added = {t.content: (t.lstrip, t.rstrip, t.special, t.normalized, t.single_word)
             for t in hf.added_tokens_decoder.values()}
    # not hf.word_delimiter_token: transformers 5.25 writes it and reads "|" back from its own files
    return {"options": (hf.do_lower_case, hf.replace_word_delimiter_char, hf.clean_up_tokenization_spaces),
            "specials": (hf.bos_token, hf.eos_token, hf.unk_token, hf.pad_token),
            "added": added, "vocab": hf.get_vocab()}


def test_save_writes_every_setting_transformers_reads(tmp_path):
    """A tokenizer unlike the defaults in every setting (lower case, another delimiter and other special
    tokens, added tokens stripping on one side, special and not), saved by transformers, read by us, saved
    by us: transformers loads our files with the settings it saved, and encodes and decodes alike."""
    transformers = pytest.importorskip("transformers")
    import json

    vocab = {"[PAD]": 0, "[BOS]": 1, "[EOS]": 2, "[UNK]": 3, "/": 4, **{c: 5 + i for i, c in enumerate("ABCDÉ'")}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    hf = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), bos_token="[BOS]", eos_token="[EOS]",
                                           unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="/",
                                           replace_word_delimiter_char="_", do_lower_case=True,
                                           clean_up_tokenization_spaces=True)
    hf.add_tokens([transformers.AddedToken("<laugh>", lstrip=True, rstrip=False)])
    hf.add_tokens([transformers.AddedToken("<noise>", lstrip=False, rstrip=True)], special_tokens=True)
    hf.save_pretrained(str(tmp_path / "theirs"))
    ours = CTCTokenizer.from_dir(tmp_path / "theirs")
    (tmp_path / "ours").mkdir()
    written = ours.save(tmp_path / "ours")
    assert [p.name for p in written] == ["vocab.json", "tokenizer_config.json", "special_tokens_map.json"]
    assert all(p.is_file() for p in written)
    reloaded = transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(tmp_path / "ours"))
    assert _settings(reloaded) == _settings(hf)
    again = CTCTokenizer.from_dir(tmp_path / "ours")
    multi = {t: f for t, f in ours.added.items() if len(t) > 1}  # one character splits alike either way
    assert (again.vocab, again.extra_special, again.special_tokens) == \
        (ours.vocab, ours.extra_special, ours.special_tokens)
    assert again.normalized == {"<laugh>": True, "<noise>": True} == {t: ours.normalized[t] for t in again.normalized}
    assert {t: f for t, f in again.added.items() if len(t) > 1} == multi
    assert (again.word_delimiter_token, again.pad_token, again.unk_token) == ("/", "[PAD]", "[UNK]")
    for text in ["abc dé", "a <laugh> b", "c<noise> d", "x? 'b'", ""]:
        assert again.encode(text) == hf(text)["input_ids"], text
        if " " not in text:  # transformers' reload maps spaces to its default "|" (see _settings)
            assert reloaded(text)["input_ids"] == hf(text)["input_ids"], text
    for row in random_ids(60, seed=4):
        row = [i % len(reloaded) for i in row]
        for options in ({}, {"skip_special_tokens": True}):
            assert again.decode(row, **options) == hf.decode(row, **options)


def test_decode_output_names_what_it_lacks(ours):
    out = ours.decode([5, 6], output_char_offsets=True)
    assert out.text == out["text"] and out.word_offsets is None
    with pytest.raises(AttributeError, match="^shape$"):
        _ = out.shape


def test_unreadable_tokenizer_files_are_artifact_errors(tmp_path):
    from runtime.errors import ArtifactError

    with pytest.raises(ArtifactError, match=r"^no vocab.json in .*: a CTC artifact needs the checkpoint's tokenizer "
                                            r"files to turn logits into text$"):
        CTCTokenizer.from_dir(tmp_path)
    (tmp_path / "vocab.json").write_text("{broken")
    with pytest.raises(ArtifactError, match=r"^cannot read .*vocab.json: Expecting property name"):
        CTCTokenizer.from_dir(tmp_path)


def test_longest_added_token_wins_and_strip_flags_apply_per_side(tmp_path):
    """Added tokens that share a prefix ("<n>", "<no>", "<noise>") split leftmost-longest, as transformers'
    trie does; a token that does not strip on its left keeps the space before it as a delimiter."""
    transformers = pytest.importorskip("transformers")
    import json

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("abcno<>")}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    hf = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    for token, lstrip in (("<n>", True), ("<noise>", False), ("<no>", True), ("<no", True)):
        hf.add_tokens([transformers.AddedToken(token, lstrip=lstrip, rstrip=False)])
    hf.save_pretrained(str(tmp_path / "hf"))
    mine = CTCTokenizer.from_dir(tmp_path / "hf")
    for text in ["a<noise>b", "a <noise> b", "a <no> b", "<n><no><noise>", "c <n>", "<noi", "b  <noise>", "<nob"]:
        assert mine.encode(text) == hf(text)["input_ids"], text


def test_encode_messages():
    tokenizer = CTCTokenizer({"<pad>": 0, "a": 1, "|": 2}, unk_token="<unk>")
    with pytest.raises(InputError, match="^text must be a string, got list$"):
        tokenizer.encode(["a"])
    with pytest.raises(InputError, match=r"^text 'ab' has characters outside the vocabulary and it has no unk token$"):
        tokenizer.encode("ab")


def test_batch_decode_of_logits_ids_and_offsets(ours):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2, 9, len(ours.vocab))).astype(np.float32)
    ids = logits.argmax(-1)
    assert ours.batch_decode(logits) == ours.batch_decode(ids) == [ours.decode(r) for r in ids]
    one = ours.batch_decode(ids[:1], output_char_offsets=True)  # one sequence: lists of one
    assert one["text"] == [ours.decode(ids[0])] and len(one["char_offsets"]) == 1
    assert ours.batch_decode([], output_word_offsets=True) == {}
    with pytest.raises(InputError, match=r"^logits for batch_decode must be \(batch, frames, vocab\), got shape "
                                         r"\(2, 9, 3, 1\)$"):
        ours.batch_decode(np.zeros((2, 9, 3, 1), np.float32))
    with pytest.raises(InputError, match=r"^batch_decode takes a list of id sequences \(or \(batch, frames, vocab\) "
                                         r"logits\), got ndarray; use decode for one sequence$"):
        ours.batch_decode(np.array([1, 2, 3]))


def test_save_writes_utf8_json_as_transformers_does(tmp_path):
    """Indented, non-ASCII characters as themselves, a final newline; an added token without saved
    flags (a plain string in added_tokens_decoder) is written with transformers' defaults."""
    import json

    (tmp_path / "vocab.json").write_text(json.dumps({"<pad>": 0, "é": 1, "|": 2}, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {"3": "ß"}}))
    tokenizer = CTCTokenizer.from_dir(tmp_path)
    (tmp_path / "out").mkdir()
    tokenizer.save(tmp_path / "out")
    raw = (tmp_path / "out" / "vocab.json").read_bytes()
    assert "é".encode() in raw and raw.endswith(b"}\n") and raw.startswith(b'{\n  "')
    config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["added_tokens_decoder"] == {"3": {"content": "ß", "lstrip": False, "rstrip": False,
                                                    "normalized": False, "single_word": False, "special": False}}


def test_decode_takes_ids_in_every_form_transformers_does(ours, theirs):
    torch = pytest.importorskip("torch")
    ids = [5, 5, 0, 6, 4, 7]
    expected = theirs.decode(ids)
    assert ours.decode(np.array(ids, np.float32)) == expected  # whole floats: ids, as transformers takes them
    assert ours.decode(np.array(ids, np.uint8)) == expected
    assert ours.decode(torch.tensor(ids)) == expected
    logits = np.eye(len(ours.vocab), dtype=np.float32)[ids]
    assert ours.decode(torch.tensor(logits, dtype=torch.float16, requires_grad=True)) == expected
    assert ours.decode(np.int64(7)) == ours.decode([7]) == theirs.decode(7)  # one id
    assert ours.decode([]) == "" and ours.decode(np.zeros((0, 4), np.float32)) == ""
    with pytest.raises(InputError, match=r"^decode takes one sequence of token ids, got list: "):
        ours.decode([[1, 2], [3]])
    with pytest.raises(InputError, match=r"^logits for decode must be \(frames, vocab\), got shape \(3,\)$"):
        ours.decode(np.array([0.5, 1.0, 2.0]))  # floats that are not whole ids
    with pytest.raises(InputError, match=r"^decode takes one sequence of token ids \(or \(frames, vocab\) logits\), "
                                         r"got an array of shape \(2, 2\) and dtype int64$"):
        ours.decode(np.zeros((2, 2), np.int64))
    with pytest.raises(InputError, match=r"and dtype bool$"):
        ours.decode(np.array([True, False]))


def test_default_settings_are_transformers(tmp_path, theirs):
    transformers = pytest.importorskip("transformers")
    import json

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6, "ab": 7, ".": 8}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    hf = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    mine = CTCTokenizer(vocab)
    assert (mine.bos_token, mine.eos_token, mine.unk_token, mine.pad_token) == \
        (hf.bos_token, hf.eos_token, hf.unk_token, hf.pad_token)
    assert (mine.do_lower_case, mine.clean_up_tokenization_spaces, mine.word_delimiter_token) == (False, False, "|")
    assert mine.base_vocab == vocab and mine.extra_special == [] and mine.normalized == {}
    assert mine.added == {"<pad>": (True, True), "<s>": (True, True), "</s>": (True, True), "<unk>": (True, True),
                          "ab": (True, True)}  # every multi-character token, from two characters up
    for text in ["ab a", "a ab.", "b ab"]:
        assert mine.encode(text) == hf(text)["input_ids"], text
    for row in ([5, 8, 4, 6], [1, 5, 2]):
        assert mine.decode(row) == hf.decode(row)


def test_tokenizer_files_in_every_form_transformers_writes(tmp_path, theirs):
    """special_tokens_map.json alone, additional_special_tokens, added_tokens.json (tokens added later,
    never stripped), and a special added token: each read as transformers reads it."""
    transformers = pytest.importorskip("transformers")
    import json

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"unk_token": "<unk>", "pad_token": "<pad>",
                                                                  "additional_special_tokens": ["<x>"]}))
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<x>": 7, "<later>": 8}))
    older = transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(tmp_path))  # no added_tokens_decoder yet
    mine = CTCTokenizer.from_dir(tmp_path)
    assert mine.added["<later>"] == (False, False) and "<x>" in mine.special_tokens
    for text in ["a <later> b", "a<x> b", "b a"]:
        assert mine.encode(text) == older(text)["input_ids"], text
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {
        "9": {"content": "<sp>", "lstrip": False, "rstrip": False, "special": True, "normalized": False}}}))
    hf = transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(tmp_path))  # which then supersedes added_tokens.json
    mine = CTCTokenizer.from_dir(tmp_path)
    assert mine.flagged_special == {"<sp>"} and "<sp>" not in mine.special_tokens and "<later>" not in mine.vocab
    for text in ["a <later> b", "a<x> b", "b <sp>a"]:
        assert mine.encode(text) == hf(text)["input_ids"], text
    for row in ([5, 6, 9, 5], [9, 9, 0, 5, 4]):
        assert mine.decode(row, skip_special_tokens=True) == hf.decode(row, skip_special_tokens=True), row


def test_vocabularies_that_are_not_one_ctc_vocabulary(tmp_path):
    import json

    from runtime.errors import ArtifactError

    (tmp_path / "vocab.json").write_text(json.dumps({"en": {"<pad>": 0}, "fr": {"<pad>": 0}}))
    with pytest.raises(ArtifactError, match=r"^.*vocab\.json is a multi-language vocabulary; pick one language$"):
        CTCTokenizer.from_dir(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"<pad>": "zero"}))
    with pytest.raises(ArtifactError, match=r"^the tokenizer files in .* are not a CTC vocabulary: invalid literal"):
        CTCTokenizer.from_dir(tmp_path)


def test_a_tokenizer_that_cleans_up_spaces_does_so_unless_told_not_to(tmp_path):
    transformers = pytest.importorskip("transformers")
    import json

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, ".": 6, "?": 7}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"clean_up_tokenization_spaces": True}))
    hf, mine = transformers.Wav2Vec2CTCTokenizer.from_pretrained(str(tmp_path)), CTCTokenizer.from_dir(tmp_path)
    row = [5, 4, 6, 4, 5, 4, 7]  # "a . a ?"
    assert mine.decode(row) == hf.decode(row) == "a. a?"
    assert mine.decode(row, clean_up_tokenization_spaces=False) == hf.decode(row, clean_up_tokenization_spaces=False) \
        == "a . a ?"
