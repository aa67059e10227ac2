"""Audio guidance (kiosk.speech) with the real espeak-ng (Makefile DEB_PACKAGES installs it):
Persian and English are synthesised to WAV files in the background; a new utterance stops the
one still speaking; with espeak-ng not on PATH the speaker is silent and says so."""

from __future__ import annotations

import subprocess
import time
import wave
from pathlib import Path

import pytest

from kiosk.messages_ui import render
from kiosk.speech import Speaker, find_espeak
from kiosk.text.bidi import LRI


def duration(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def test_espeak_ng_with_a_persian_voice_is_installed() -> None:
    exe = find_espeak()
    assert exe is not None, "espeak-ng is missing: make deps installs it"
    voices = subprocess.run([exe, "--voices=fa"], capture_output=True, text=True, check=True).stdout
    assert " fa " in voices
    # the Persian voice reads Persian letters as words (phonemes), not as unknown characters
    phonemes = subprocess.run([exe, "-v", "fa", "-q", "-x", "سلام"], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert phonemes and "s" in phonemes


def test_a_screen_is_spoken_in_persian_and_english_in_the_background(tmp_path: Path) -> None:
    speaker = Speaker(out_dir=tmp_path)
    assert speaker.available
    fa = render("ui.tracking", "fa", tracking="190057936417")
    assert LRI in fa  # the isolates a label holds are not read out
    t0 = time.monotonic()
    assert speaker.say(fa, "fa")
    started = time.monotonic() - t0
    assert speaker.wait() == 0
    assert speaker.say(render("ui.tracking", "en", tracking="190057936417"), "en")
    assert speaker.wait() == 0
    fa_wav, en_wav = speaker.files
    assert fa_wav.name.endswith("-fa.wav") and en_wav.name.endswith("-en.wav")
    assert duration(fa_wav) > 1.0 and duration(en_wav) > 1.0
    assert fa_wav.read_bytes() != en_wav.read_bytes()
    assert started < 0.5  # say() only starts the process


def test_a_new_utterance_stops_the_one_still_speaking() -> None:
    speaker = Speaker()  # played, not written: a long text keeps espeak-ng busy for a while
    long_text = " ".join([render("ui.still_there", "en", seconds=20)] * 30)
    assert speaker.say(long_text, "en")
    first = speaker._proc
    assert first is not None
    assert speaker.say(render("ui.ok", "en"), "en")
    assert first.poll() is not None  # stopped (terminated, or had nothing to play on)
    speaker.stop()
    assert speaker._proc is None and speaker.spoken == 2


def test_without_espeak_ng_the_kiosk_is_silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no espeak-ng on it
    assert find_espeak() is None
    speaker = Speaker(out_dir=tmp_path / "out")
    assert not speaker.available
    assert speaker.say("سلام", "fa") is False and speaker.spoken == 0
    assert not (tmp_path / "out").exists()
    speaker.stop()  # nothing to stop


def test_an_espeak_ng_that_cannot_start_turns_speech_off(tmp_path: Path) -> None:
    speaker = Speaker(executable=str(tmp_path / "gone"))
    assert speaker.available
    assert speaker.say("hello", "en") is False
    assert not speaker.available
