"""The fleet agent is appliance code: importing it (and the wire rules it shares with the
server) loads no server library, and the `kiosk` command builds with it on a kiosk that has
none installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from test_structure import SERVER_LIBS, _loaded_after_importing


def test_the_agent_and_the_shared_wire_code_import_no_server_library() -> None:
    loaded = _loaded_after_importing(["provisioning.agent", "provisioning.common"])
    assert "provisioning" in loaded and "kiosk" in loaded  # the walk really ran
    assert not loaded & set(SERVER_LIBS), sorted(loaded & set(SERVER_LIBS))


def test_kiosk_agent_runs_with_the_server_libraries_unimportable() -> None:
    code = textwrap.dedent(f"""
        import sys
        for name in {SERVER_LIBS!r}:
            sys.modules[name] = None  # importing any of them now raises ImportError
        from kiosk.cli import main
        sys.exit(main(["agent", "status", "--data-dir", sys.argv[1]]))
    """)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "not enrolled" in out.stderr and "Traceback" not in out.stderr


def test_the_server_side_is_not_imported_by_the_appliance() -> None:
    code = "import kiosk.cli, sys; kiosk.cli.build_parser(); print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    modules = set(out.stdout.split())
    assert "provisioning.agent.command" in modules
    assert not {m for m in modules if m.startswith("provisioning.server")}
