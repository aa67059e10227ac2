"""`kiosk` command line. Each sub-command lives in kiosk/commands/<name>.py and exposes
`register(subparsers, common)`; the handler it sets as `func` returns the exit code.

The global options (--data-dir, --log-level) are accepted at every level of the command tree,
before or after the sub-command; the innermost one given wins. A person's mistake ends in one
line on stderr, never a traceback.

Exit codes: 0 ok, 1 the thing checked is bad/failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import pkgutil
import shlex
import shutil
import sys
from pathlib import Path
from typing import Iterator

import kiosk.commands
from kiosk.errors import KioskError

#: entry-point group through which other installed packages add sub-commands (the demo
#: harness adds `demo`), so the appliance never imports them
PLUGIN_GROUP = "city_kiosk.commands"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL = "WARNING"

#: the data dir holds the journal, receipt keys and credentials: nobody else may read them,
#: from the moment each file is created (a chmod afterwards leaves a window)
UMASK = 0o077

log = logging.getLogger("kiosk.cli")


def kiosk_command(argv0: str | None = None) -> str:
    """How the person at this shell can run `kiosk` again, to print in hints they can paste:
    `kiosk` when the PATH finds this very script, else its path (`.venv/bin/kiosk` after
    `make run`), else `python -m kiosk.cli` with this interpreter."""
    script = Path(argv0 if argv0 is not None else sys.argv[0])
    if script.name != "kiosk":
        return f"{shlex.quote(sys.executable)} -m kiosk.cli"
    found = shutil.which("kiosk")
    if found and Path(found).resolve() == script.resolve():
        return "kiosk"
    full = script.absolute()
    try:
        shown = str(full.relative_to(Path.cwd()))  # has a slash, so the shell takes it as a path
    except ValueError:
        shown = str(full)
    return shlex.quote(shown if "/" in shown else f"./{shown}")


def log_level(text: str) -> str:
    """argparse type for --log-level: a level name in any case; a usage error otherwise."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"unknown log level {text!r} (choose from {', '.join(LOG_LEVELS)})")
    return level


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--data-dir and --log-level. Only the top-level parser has defaults: argparse copies a
    sub-parser's defaults over what its parent parsed, so below the top a value is set only
    when given (SUPPRESS), and the innermost one given wins."""
    parser.add_argument("--data-dir", default=None if top else argparse.SUPPRESS,
                        help="where the journal, keys and demo databases live "
                        "(default: $KIOSK_DATA_DIR or the platform's user data dir)")
    parser.add_argument("--log-level", type=log_level, default=DEFAULT_LOG_LEVEL if top else argparse.SUPPRESS,
                        metavar="LEVEL", help=f"{', '.join(LOG_LEVELS)} (default {DEFAULT_LOG_LEVEL})")


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.values()


def _accept_global_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every parser below the top the global options, unless a command already took
    them through `common`: commands need not place them, and `kiosk sim printer --data-dir D`
    or `kiosk journal --data-dir D verify` work as `kiosk --data-dir D journal verify` does."""
    for child in _subparsers(parser):
        if "--data-dir" not in child._option_string_actions and child.prefix_chars == "-":
            _add_global_options(child, top=False)
        _accept_global_options_everywhere(child)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, top=False)
    parser = argparse.ArgumentParser(prog="kiosk", description="City Kiosk (کیوسک شهر) appliance")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(kiosk.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"kiosk.commands.{info.name}")
        module.register(sub, common)
    importlib.import_module("provisioning.agent.command").register(sub, common)  # fleet agent (issue 11)
    for entry in sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            plugin = entry.load()
        except ImportError as exc:  # e.g. the demo without the [server] extra installed
            _register_missing(sub, entry.name, exc)
            continue
        plugin.register(sub, common)
    _accept_global_options_everywhere(parser)
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


def _fail(prefix: str, message: str) -> int:
    print(f"{prefix}: {message}", file=sys.stderr)
    return 1


def _os_error_text(exc: OSError) -> str:
    where = " → ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    return f"{exc.strerror or exc}" + (f": {where}" if where else "")


def main(argv: list[str] | None = None) -> int:
    # before anything is written: the journal, databases and keys are born private
    os.umask(UMASK)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from kiosk.logging_setup import configure

    configure(getattr(args, "log_level", DEFAULT_LOG_LEVEL))
    prefix = f"kiosk {args.command}"
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`kiosk journal show | head`): what it read is all it wanted.
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KioskError as exc:
        # typed errors carry their own text for a person; the detail goes to the log
        log.debug("%s failed", prefix, exc_info=True)
        return _fail(prefix, exc.message("en"))
    except OSError as exc:
        # the environment refused (read-only disk, a file where a dir should be, port in use)
        log.debug("%s failed", prefix, exc_info=True)
        return _fail(prefix, _os_error_text(exc))


if __name__ == "__main__":
    sys.exit(main())
