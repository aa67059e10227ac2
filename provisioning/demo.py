"""A fleet on one machine (`make run-fleet`, or `python -m provisioning.demo`): a fleet server on
SQLite and loopback, a kiosk data dir that enrolls with its own key, a configuration pushed to
its site, a command, and the agent's run — then what the managers see. With --serve the
server keeps running (Ctrl-C stops) and prints the commands to try against it."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kiosk.maintenance import disabled_services
from provisioning.agent.runner import Agent, enroll
from provisioning.server import service as svc
from provisioning.server.app import Settings
from provisioning.server.db import make_engine, session_factory
from provisioning.server.models import Role
from provisioning.server.server import serve_in_thread


def run(workdir: Path, *, serve: bool = False, port: int = 0) -> dict[str, Any]:
    db = f"sqlite:///{workdir / 'fleet.sqlite3'}"
    server = serve_in_thread(db, port=port, settings=Settings(interval_s=10))
    engine = make_engine(db)
    sessions = session_factory(engine)
    try:
        with sessions() as s, s.begin():
            admin = svc.create_manager_token(s, svc.CLI, "demo-admin", Role.ADMIN)
            token = svc.create_enroll_token(s, svc.CLI, label="demo", site="tajrish")
            svc.push_layer(s, svc.CLI, "fleet", "", {"lang": "fa", "pay_timeout_s": 90})
            svc.push_layer(s, svc.CLI, "site", "tajrish", {"topup_max_rials": 3_000_000,
                                                           "extra": {"brand": "tajrish-square"}})
        data = workdir / "kiosk"
        data.mkdir(mode=0o700, exist_ok=True)
        (data / "kiosk.json").write_text(json.dumps({"kiosk_id": "kiosk-tajrish-03", "lang": "en"}))
        state = enroll(data, server.url, token, serial="kiosk-tajrish-03")
        with sessions() as s, s.begin():
            svc.queue_command(s, svc.CLI, state.kiosk_id, "maintenance_on")
        report = Agent(data).run_once()
        with sessions() as s, s.begin():
            view = svc.get_kiosk(s, state.kiosk_id, 10)
        result = {"server": server.url, "db": db, "kiosk_data_dir": str(data), "agent_run": report.as_dict(),
                  "kiosk_json": json.loads((data / "kiosk.json").read_text()),
                  "services_out_of_service": list(disabled_services(data)), "server_view": view}
        print(json.dumps(result, ensure_ascii=False, indent=2))
        if serve:
            q = shlex.quote
            print(f"\nfleet server on {server.url} (Ctrl-C stops). Try:\n"
                  f"  fleet kiosks --db {q(db)}\n"
                  f"  fleet command kiosk-tajrish-03 upload_logs --db {q(db)}\n"
                  f"  kiosk agent run --once --data-dir {q(str(data))}\n"
                  f"  fleet commands kiosk-tajrish-03 --db {q(db)}\n"
                  f"  curl -H 'Authorization: Bearer {admin}' {server.url}/api/v1/kiosks", flush=True)
            while True:
                time.sleep(3600)
        return result
    finally:
        server.stop()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provisioning.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="work here (default: a temporary dir, removed at the end)")
    parser.add_argument("--serve", action="store_true", help="keep the server running afterwards")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.dir:
            Path(args.dir).mkdir(parents=True, exist_ok=True)
            run(Path(args.dir), serve=args.serve, port=args.port)
        else:
            with tempfile.TemporaryDirectory(prefix="fleet-demo-") as tmp:
                run(Path(tmp), serve=args.serve, port=args.port)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
