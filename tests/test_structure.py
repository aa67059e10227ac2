"""The rule of dependencies, checked on the real import graph: the appliance (kiosk/, devices/)
installs and runs without the server libraries, nothing imports the demo harness, devices/
never imports kiosk/, and the servers import only kiosk's pure modules."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SERVER_LIBS = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "backoffice", "kiosk_demo")


def _loaded_after_importing(packages: list[str]) -> set[str]:
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        for name in {packages!r}:
            pkg = importlib.import_module(name)
            for info in pkgutil.walk_packages(pkg.__path__, name + "."):
                importlib.import_module(info.name)
        print("\\n".join(sorted(sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return {m.split(".")[0] for m in out.stdout.split()}


def test_the_appliance_imports_no_server_library_and_not_the_demo_harness() -> None:
    loaded = _loaded_after_importing(["kiosk", "devices"])
    assert "kiosk" in loaded and "devices" in loaded  # the walk really ran
    assert not loaded & set(SERVER_LIBS), sorted(loaded & set(SERVER_LIBS))


def test_devices_never_import_kiosk() -> None:
    loaded = _loaded_after_importing(["devices"])
    assert "devices" in loaded
    assert "kiosk" not in loaded and "kiosk_demo" not in loaded


def test_the_kiosk_cli_builds_without_the_demo_harness_importable() -> None:
    # a kiosk installed without the [server] extra: the demo command says what to install
    code = textwrap.dedent("""
        import sys
        sys.modules["kiosk_demo"] = None  # importing it now raises ImportError
        sys.modules["kiosk_demo.command"] = None
        from kiosk.cli import main
        sys.exit(main(["demo", "--script", "pay-fee"]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "city-kiosk[server]" in out.stderr and "Traceback" not in out.stderr
