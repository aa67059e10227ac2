"""Where Kivy may be imported: only screens/ and the UI entry point (kiosk.ui_main, inside its
functions). Importing every module of the appliance loads no Kivy, the `kiosk` command builds
without it, and a data dir without kiosk.json is refused before any window opens."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_the_appliance_loads_no_kivy() -> None:
    out = _run("""
        import importlib, pkgutil, sys
        for name in ("kiosk", "devices"):
            pkg = importlib.import_module(name)
            for info in pkgutil.walk_packages(pkg.__path__, name + "."):
                importlib.import_module(info.name)
        from kiosk.cli import build_parser
        build_parser()  # every sub-command registered, kiosk ui and ui-tour among them
        import kiosk.ui_main
        print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = set(out.stdout.split())
    assert "kiosk" in loaded and "devices" in loaded
    assert "kivy" not in loaded and "screens" not in loaded


def test_the_screens_import_neither_the_demo_nor_the_servers() -> None:
    out = _run("""
        import importlib, pkgutil, sys
        import screens
        for info in pkgutil.walk_packages(screens.__path__, "screens."):
            importlib.import_module(info.name)
        print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
        # every tile: a title in the catalog, what it needs in the status coordinator, a flow
        from kiosk.messages import CATALOG
        from kiosk.status import SERVICE_NEEDS
        from screens.app import SERVICES
        for s in SERVICES:
            module, _, cls = s.flow.partition(":")
            assert s.title_key in CATALOG and s.id in SERVICE_NEEDS, s
            assert hasattr(importlib.import_module(module), cls), s
        assert {s.id for s in SERVICES} == set(SERVICE_NEEDS)
    """)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = set(out.stdout.split())
    assert "kivy" in loaded and "screens" in loaded
    assert not loaded & {"kiosk_demo", "backoffice", "fastapi", "sqlalchemy", "uvicorn"}, loaded
    assert "qrcode" not in loaded  # imported at the first QR shown (screens.app KivyUI._qr)


def test_kiosk_ui_refuses_an_unconfigured_data_dir_before_any_window(tmp_path: Path) -> None:
    out = _run("import sys; from kiosk.cli import main; sys.exit(main(sys.argv[1:]))",
               "ui", "--data-dir", str(tmp_path / "k"))
    assert out.returncode == 1
    assert out.stderr.startswith("kiosk ui: This kiosk is not configured") and "Traceback" not in out.stderr
    assert not (tmp_path / "k" / "kivy").exists()  # Kivy never started
