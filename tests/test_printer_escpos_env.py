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
        # the pickle, and the lock file concurrent importers take turns on
        assert sorted(p.name.endswith(".capabilities.pickle") or p.name == ".import.lock"
                      for p in (cache / "escpos").iterdir()) == [True, True]
        assert stdout.splitlines()[-1] == "0"  # python-escpos's basicConfig() handler did not stay
        temp.rmdir()


def test_two_processes_importing_escpos_on_a_cold_cache_both_start(tmp_path: Path) -> None:
    """python-escpos writes its capabilities pickle in place; a second process importing it
    meanwhile read half a file (EOFError) — seen when `make run` started while the tests ran.
    The import takes an exclusive lock per cache dir, so eight at once on a cold cache all
    start."""
    import subprocess
    import sys

    env = {**os.environ, "KIOSK_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("ESCPOS_CAPABILITIES_PICKLE_DIR", None)
    procs = [subprocess.Popen([sys.executable, "-c", "import devices.printer.escpos_env"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0] * 8, [err[-500:] for _, err in results]
