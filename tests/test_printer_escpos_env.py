"""python-escpos imported through devices.printer leaves nothing in the system temp dir (its
capabilities pickle lives in our cache dir) and no handler on the root logger."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PRINT_SOMETHING = """
import logging
from devices.printer.escpos_driver import job_to_escpos_bytes
from devices.contracts import PrintJob
from escpos.printer import Dummy
p = Dummy(profile="TM-T20II")
p.set(align="center", bold=True)
p.text("hello\\n")
p.barcode("{B12345678", "CODE128", function_type="B")
assert job_to_escpos_bytes(PrintJob(parts=[("text", "x\\n")]))
print(len(logging.getLogger().handlers))
"""


def _run(tmp_path: Path, code: str) -> tuple[str, Path, Path]:
    temp, cache = tmp_path / "tmp", tmp_path / "cache"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "KIOSK_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    env.pop("ESCPOS_CAPABILITIES_PICKLE_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout, temp, cache


def test_an_escpos_command_leaves_nothing_in_the_system_temp_dir(tmp_path: Path) -> None:
    for _ in range(2):  # the first run writes the pickle, the second reads it
        stdout, temp, cache = _run(tmp_path, _PRINT_SOMETHING)
        assert list(temp.iterdir()) == []
        assert [p.name.endswith(".capabilities.pickle") for p in (cache / "escpos").iterdir()] == [True]
        assert stdout.splitlines()[-1] == "0"  # python-escpos's basicConfig() handler did not stay
        temp.rmdir()
