"""`kiosk` command line. Each sub-command lives in kiosk/commands/<name>.py and exposes
`register(subparsers, common)`; the handler it sets as `func` returns the exit code.

Exit codes: 0 ok, 1 the thing checked is bad/failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import kiosk.commands


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="where the journal, keys and demo databases live "
                        "(default: $KIOSK_DATA_DIR or the platform's user data dir)")
    common.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")
    parser = argparse.ArgumentParser(prog="kiosk", description="City Kiosk (کیوسک شهر) appliance")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(kiosk.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"kiosk.commands.{info.name}")
        module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from kiosk.logging_setup import configure

    configure(getattr(args, "log_level", "WARNING"))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
