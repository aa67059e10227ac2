"""`kiosk` command line. Each sub-command lives in kiosk/commands/<name>.py and exposes
`register(subparsers, common)`; the handler it sets as `func` returns the exit code.

Exit codes: 0 ok, 1 the thing checked is bad/failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import pkgutil
import sys

import kiosk.commands

#: entry-point group through which other installed packages add sub-commands (the demo
#: harness adds `demo`), so the appliance never imports them
PLUGIN_GROUP = "city_kiosk.commands"


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
    for entry in sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            plugin = entry.load()
        except ImportError as exc:  # e.g. the demo without the [server] extra installed
            _register_missing(sub, entry.name, exc)
            continue
        plugin.register(sub, common)
    return parser


def _register_missing(sub: argparse._SubParsersAction, name: str, exc: ImportError) -> None:
    def unavailable(_args: argparse.Namespace) -> int:
        print(f"kiosk {name}: not available in this installation ({exc}); "
              "install the extra it needs: pip install 'city-kiosk[server]'", file=sys.stderr)
        return 1

    # no option prefix: every word after the command is taken as is, whatever its options
    p = sub.add_parser(name, help=f"(unavailable: {exc.name or exc})", prefix_chars="\x00",
                       add_help=False)
    p.add_argument("rest", nargs="*")
    p.set_defaults(func=unavailable)


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
