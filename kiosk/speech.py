"""Audio guidance: the screen's words spoken through espeak-ng (its Persian voice `fa`, its
English voice `en`), for a citizen who cannot read the screen well.

No Kivy here. `Speaker.say(text, lang)` starts espeak-ng in its own process and returns at
once, so the UI never waits for speech; a new utterance stops the one still speaking (the
screen moved on). When espeak-ng is not installed, `available` is False and `say` does
nothing: the kiosk works the same, silent.

`out_dir` (tests, a kiosk with no sound card) writes each utterance as a WAV file there
(`espeak-ng -w`) instead of playing it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from kiosk.text.bidi import FSI, LRI, PDI, RLI

log = logging.getLogger("kiosk.speech")

#: espeak-ng's voice for each language of the screen
VOICES = {"fa": "fa", "en": "en"}
#: words per minute: a little slower than espeak-ng's 175, for a public place
RATE = 150
#: the longest text spoken at once (a screen's words; espeak-ng takes its text as an argument)
MAX_CHARS = 2000

_ISOLATES = str.maketrans("", "", LRI + RLI + FSI + PDI)


def find_espeak() -> str | None:
    """The espeak-ng executable on PATH, or None."""
    return shutil.which("espeak-ng")


class Speaker:
    def __init__(self, *, executable: str | None = None, out_dir: Path | None = None, rate: int = RATE) -> None:
        self.executable = executable if executable is not None else find_espeak()
        self.out_dir = out_dir
        self.rate = rate
        self._proc: subprocess.Popen[bytes] | None = None
        self.spoken = 0  # utterances started (tests)
        self.files: list[Path] = []  # with out_dir: the WAV of each utterance
        self.said: list[tuple[str, str]] = []  # (lang, words) of each utterance started, at most 50

    @property
    def available(self) -> bool:
        return self.executable is not None

    def say(self, text: str, lang: str = "fa") -> bool:
        """Speak `text` in `lang` in the background; True when an utterance started."""
        words = " ".join(text.translate(_ISOLATES).split())[:MAX_CHARS]
        if not self.available or not words:
            return False
        self.stop()
        assert self.executable is not None
        cmd = [self.executable, "-v", VOICES.get(lang, "en"), "-s", str(self.rate)]
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            wav = self.out_dir / f"utterance-{self.spoken:04d}-{lang}.wav"
            self.files.append(wav)
            cmd += ["-w", str(wav)]
        cmd += ["--", words]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:  # removed since we looked, or not executable: silent from now on
            log.warning("espeak-ng did not start: %s", exc)
            self.executable = None
            return False
        self.spoken += 1
        self.said = [*self.said[-49:], (lang, words)]
        return True

    def stop(self) -> None:
        """Stop the utterance still speaking, if any (and reap the last one)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait(self, timeout: float = 10.0) -> int | None:
        """Wait for the utterance now speaking to end (tests); its exit status."""
        proc = self._proc
        return None if proc is None else proc.wait(timeout=timeout)


__all__ = ["Speaker", "VOICES", "find_espeak"]
