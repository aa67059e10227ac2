"""`python -m provisioning.demo` (make run-fleet): a fleet server, a kiosk that enrolls, takes
its site's configuration and a command, and what the server then shows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from provisioning.common.config import covers

ROOT = Path(__file__).resolve().parents[1]


def test_the_fleet_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "provisioning.demo", "--dir", str(tmp_path)], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["agent_run"]["config"] == "applied"
    assert [c["status"] for c in result["agent_run"]["commands"]] == ["done"]
    local = result["kiosk_json"]
    assert local["topup_max_rials"] == 3_000_000 and local["extra"] == {"brand": "tajrish-square"}
    from kiosk.status import SERVICE_NEEDS

    assert result["services_out_of_service"] == sorted(SERVICE_NEEDS)  # maintenance_on
    view = result["server_view"]
    assert view["status"] == "accepted" and view["site"] == "tajrish" and view["presence"] == "online"
    assert view["config"]["in_sync"] and view["config"]["delta"] == {}
    assert json.loads((tmp_path / "kiosk" / "kiosk.json").read_text()) == local


def test_covers_compares_what_the_fleet_asked_for() -> None:
    assert covers({"brand": "x", "fleet": {"maintenance": True}}, {"brand": "x"})
    assert not covers({"brand": "y"}, {"brand": "x"})
    assert not covers({}, {"brand": "x"})
    assert covers(45, 45) and covers(45.0, 45) and not covers(1, True) and not covers(True, 1)
    assert covers([1, 2], [1, 2]) and not covers([1, 2, 3], [1, 2])
