"""`kiosk agent enroll|run|status`: this kiosk in a fleet (see docs/fleet.md).

  kiosk agent enroll --server URL --token T [--serial S] [--model M] [--fleet-key K]
  kiosk agent run [--once] [--json]
  kiosk agent status [--json]

Exit codes: 0 ok, 1 refused or failed (one line on stderr), 2 usage."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from kiosk.paths import data_dir


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("agent", help="the fleet agent: enroll this kiosk, report, take configuration")
    actions = parser.add_subparsers(dest="agent_action", metavar="ACTION")
    p = actions.add_parser("enroll", parents=[common], help="enroll with a fleet server (makes this kiosk's key)")
    p.add_argument("--server", required=True, metavar="URL")
    p.add_argument("--token", required=True, metavar="T", help="an enrollment token from a fleet manager")
    p.add_argument("--serial", help="this kiosk's serial number (default: kiosk.json's kiosk_id)")
    p.add_argument("--model", default="city-kiosk")
    p.add_argument("--fleet-key", metavar="KEY", help="the fleet's public key, to check the server against")
    p.add_argument("--restart-command", metavar="CMD", help="what `restart` runs (e.g. 'systemctl restart kiosk')")
    p.add_argument("--restart-to-apply", action="store_true",
                   help="restart the kiosk (the hook) by itself when a configuration waits for its next start "
                   "and no transaction is open")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_enroll)
    p = actions.add_parser("run", parents=[common], help="heartbeat, configuration and commands, repeatedly")
    p.add_argument("--once", action="store_true", help="one run, then exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run)
    p = actions.add_parser("status", parents=[common], help="this kiosk's enrollment and configuration")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)
    parser.set_defaults(func=lambda _a: (parser.print_help(sys.stderr), 2)[1])


def _out(value: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(value, ensure_ascii=False, indent=2))
    else:
        print(", ".join(f"{k}: {v}" for k, v in value.items()))


def _enroll(args: argparse.Namespace) -> int:
    from provisioning.agent.runner import default_serial, enroll

    data = data_dir(args.data_dir, writable=True)
    serial = args.serial or default_serial(data)
    if not serial:
        print("kiosk agent: no --serial given and no kiosk_id in kiosk.json", file=sys.stderr)
        return 2
    state = enroll(data, args.server, args.token, serial=serial, model=args.model, fleet_key=args.fleet_key,
                   restart_command=shlex.split(args.restart_command) if args.restart_command else None,
                   restart_to_apply=args.restart_to_apply)
    _out({"kiosk_id": state.kiosk_id, "status": state.status, "server": state.server_url}, args.json)
    return 0


def _run(args: argparse.Namespace) -> int:
    from provisioning.agent.runner import Agent, run_forever

    agent = Agent(Path(data_dir(args.data_dir, writable=True)))
    if not args.once:
        run_forever(agent)
        return 0
    report = agent.run_once()
    _out(report.as_dict(), args.json)
    return 0 if report.status in ("accepted", "pending") else 1


def _status(args: argparse.Namespace) -> int:
    from provisioning.agent.apply import applied
    from provisioning.agent.errors import NotEnrolled
    from provisioning.agent.state import AgentState

    data = Path(data_dir(args.data_dir))
    state = AgentState.load(data)
    if state is None:
        raise NotEnrolled()
    current = applied(data)
    _out({"kiosk_id": state.kiosk_id, "status": state.status, "server": state.server_url,
          "config_version": current.version if current else None}, args.json)
    return 0
