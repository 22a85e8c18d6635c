"""Timed words -> SubRip (.srt) and WebVTT (.vtt) subtitles.

Words are grouped into cues the way subtitle guidelines ask: at most ~42 characters and
~5 s on screen, and a new cue after a pause of 1 s or more, so a cue never spans a silence.
A cue runs from its first word's start to its last word's end; cues inherit the words'
order, so they never overlap when the words do not. WebVTT text is escaped (&, <, >); SubRip
has no escaping, so a token such as ``<unk>`` is written as it is (players may read tags).
"""

from __future__ import annotations

import html

MAX_CHARS = 42
MAX_SECONDS = 5.0
PAUSE_SECONDS = 1.0


def cues(words: list[dict]) -> list[dict]:
    """[{"word", "start", "end"}] -> [{"text", "start", "end"}]."""
    out: list[dict] = []
    for word in words:
        last = out[-1] if out else None
        if (last is None or word["start"] - last["end"] >= PAUSE_SECONDS
                or len(last["text"]) + 1 + len(word["word"]) > MAX_CHARS
                or word["end"] - last["start"] > MAX_SECONDS):
            out.append({"text": word["word"], "start": word["start"], "end": word["end"]})
        else:
            last["text"] += " " + word["word"]
            last["end"] = word["end"]
    return out


def _clock(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(words: list[dict]) -> str:
    blocks = [f"{i}\n{_clock(c['start'], ',')} --> {_clock(c['end'], ',')}\n{c['text']}\n"
              for i, c in enumerate(cues(words), 1)]
    return "\n".join(blocks)


def to_vtt(words: list[dict]) -> str:
    # WebVTT cue text is markup: a token such as <unk> would be read as a tag and vanish
    blocks = [f"{_clock(c['start'], '.')} --> {_clock(c['end'], '.')}\n{html.escape(c['text'], quote=False)}\n"
              for c in cues(words)]
    return "WEBVTT\n\n" + "\n".join(blocks)
