"""`kiosk ui-tour --out DIR` walks every screen in Persian and English on the demo environment
and saves one PNG per screen and language (the command itself, in a subprocess, offscreen); with
`--size 1280x720` the same walk on a landscape window."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow  # a minute or two: the whole tour on the demo environment
@pytest.mark.parametrize("size", ["720x1280", "1280x720"])
def test_the_tour_saves_every_screen_in_both_languages(tmp_path: Path, size: str) -> None:
    out = tmp_path / "shots"
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen"}
    env.pop("DISPLAY", None)
    run = subprocess.run([sys.executable, "-m", "kiosk.cli", "ui-tour", "--out", str(out), "--size", size],
                         capture_output=True, text=True, timeout=420, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    check_shots(out, size)
    assert str(out / "01-attract-fa.png") in run.stdout


def check_shots(out: Path, size: str) -> None:
    """Every screen in both languages, `size` (WxH) pixels, something drawn, the languages differ."""
    width, height = (int(n) for n in size.split("x"))
    shots = sorted(out.glob("*.png"))
    names = {p.stem.rsplit("-", 1)[0] for p in shots}
    assert len(shots) == 2 * len(names) >= 84
    for screen in ("attract", "home", "keypad", "confirm", "error-invalid-bill", "outcome-receipt-qr",
                   "inactivity-warning", "home-reader-unavailable", "step-card-terminal", "outcome-ticket-on-screen",
                   "outcome-card-sale", "outcome-balance", "choose-many-slips", "confirm-basket", "outcome-basket",
                   "choose-plate-letter", "choose-permit-day", "confirm-permit", "outcome-permit",
                   "outcome-certificate-qr", "attract-large-text-high-contrast", "home-large-text-high-contrast",
                   "choose-plate-letter-large-text-high-contrast"):
        assert any(n.endswith(screen) for n in names), screen
    for name in sorted(names):
        fa = np.asarray(Image.open(out / f"{name}-fa.png").convert("L"), dtype=np.int16)
        en = np.asarray(Image.open(out / f"{name}-en.png").convert("L"), dtype=np.int16)
        assert fa.shape == en.shape == (height, width)
        assert (fa < 128).mean() > 0.005, name  # something is drawn
        assert np.abs(fa - en).mean() > 1, name  # the language switch changed the screen
