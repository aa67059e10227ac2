"""The touch UI's entry point: `kiosk ui` and `kiosk ui-tour` (the one kiosk module that may
import Kivy, and only inside functions: the `kiosk` command and the import-rule test load this
module without Kivy).

`kiosk ui` runs the kiosk with the Kivy screens (screens.app): recovery first, the outbox
worker and background recovery while it runs, then citizen sessions for ever. On a data dir
with kiosk.json it drives the configured devices; with `--demo` it starts the demo's embedded
back-office and simulators (found through the `city_kiosk.environments` entry point, so the
appliance never imports the demo harness). Kiosk mode is fullscreen, borderless, without a
cursor, deaf to Escape and to the window's close; `--windowed` is the developer's window.

`kiosk ui-tour --out DIR` walks every screen in Persian and English on the demo environment
(offscreen when no display is set) and saves one PNG per screen and language.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.errors import KioskError

log = logging.getLogger("kiosk.ui")

ENV_GROUP = "city_kiosk.environments"
#: a portrait 1080×1920 kiosk panel shown at two thirds, and its density: 21.5" → about 102 dpi
DEFAULT_SIZE = "720x1280"
DEFAULT_DPI = 102.0


class DemoUnavailable(KioskError):
    key = "ui.demo_unavailable"
    fa = "محیط نمایشی نصب نیست؛ city-kiosk[server] را نصب کنید"
    en = "the demo environment is not installed: pip install 'city-kiosk[server]'"


@dataclass(frozen=True)
class UIOptions:
    windowed: bool = False
    size: str = DEFAULT_SIZE
    dpi: float = DEFAULT_DPI
    idle_s: float = 45.0
    warn_s: float = 20.0
    terminal_latency_s: float = 0.0
    hold_steps: bool = False


def configure_kivy(options: UIOptions, data_dir: Path) -> None:
    """Set Kivy up before it is imported: kiosk or windowed mode, size, dpi, no multitouch
    emulation, Escape ignored, and Kivy's own files under the data dir."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")  # leave stderr and the kiosk's logging alone
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ["KIVY_DPI"] = str(options.dpi)
    os.environ["KIVY_METRICS_DENSITY"] = "1"
    os.environ.setdefault("KIVY_HOME", str(data_dir / "kivy"))
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    from kivy.config import Config

    width, _, height = options.size.partition("x")
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("kivy", "log_enable", "0")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("graphics", "width", width)
    Config.set("graphics", "height", height)
    Config.set("graphics", "resizable", "0")
    if options.windowed:
        Config.set("graphics", "fullscreen", "0")
        Config.set("graphics", "borderless", "0")
        Config.set("graphics", "show_cursor", "1")
    else:
        Config.set("graphics", "fullscreen", "auto")
        Config.set("graphics", "borderless", "1")
        Config.set("graphics", "show_cursor", "0")


def load_environment(name: str = "demo") -> Callable[..., AbstractContextManager[Any]]:
    """The embedded environment's context manager (the demo harness registers it)."""
    for entry in importlib.metadata.entry_points(group=ENV_GROUP):
        if entry.name == name:
            try:
                return entry.load()  # type: ignore[no-any-return]
            except ImportError as exc:
                raise DemoUnavailable(str(exc)) from exc
    raise DemoUnavailable(f"no {ENV_GROUP} entry point named {name!r}")


#: what a script gets: the UI, the app, the context, the environment (None on a real kiosk)
Script = Callable[[Any, Any, Any, Any], Awaitable[Any]]


async def run_kiosk(settings: Any, data: Path, options: UIOptions, *, lock: Any = None, env: Any = None,
                    script: Script | None = None) -> Any:
    """Open the kiosk, recover, start the screens; run citizen sessions until the window
    closes, or run `script(ui, app, ctx, env)` and stop (tests, the tour)."""
    from kiosk.context import KioskContext
    from kiosk.recovery import Recovery
    from kiosk.service_guard import JournalBroken
    from kiosk.status import for_context, refresh_blockers
    from screens.app import KioskApp, KivyUI

    ctx = await KioskContext.open(settings, data, lock=lock)
    result: Any = None
    pinger: Any = None
    broken = False
    try:
        try:
            await Recovery(ctx.journal, ctx.money).run()
        except JournalBroken:
            log.critical("journal fails verification: the kiosk is out of service")
            broken = True
        ctx.start_outbox_worker()
        status = for_context(ctx)
        ui = KivyUI(lang=settings.lang, status=status, idle_s=options.idle_s, warn_s=options.warn_s,
                    hold_steps=options.hold_steps)
        app = KioskApp(ui, kiosk_mode=not options.windowed)
        app_task = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
        await asyncio.wait({app_task, app.started}, return_when=asyncio.FIRST_COMPLETED)
        if app_task.done():  # the window never opened (no GL, no display): say why, run nothing
            app_task.result()
            raise RuntimeError("the touch UI stopped before it started")
        # systemd (docs/appliance.md): READY=1 now that the first screen is up, then WATCHDOG=1
        # from Kivy's own clock, so a frozen loop stops the pings. start_watchdog schedules
        # pinger.on_clock itself; never schedule tick (Kivy unschedules a callback returning False).
        # A broken journal still says READY: the UI is alive and shows the kiosk out of service.
        from kivy.clock import Clock
        from kiosk.watchdog import start_watchdog

        pinger = start_watchdog(Clock.schedule_interval, status="serving citizens")
        if broken:
            pinger.status("out of service: the journal fails verification")
        if script is not None:
            try:
                result = await script(ui, app, ctx, env)
            finally:
                app.stop()
                await app_task
        else:
            sessions = asyncio.ensure_future(ui.run_sessions(ctx, on_idle=lambda: refresh_blockers(status, ctx)))
            try:
                await app_task
            finally:
                sessions.cancel()
                await asyncio.gather(sessions, return_exceptions=True)
    finally:
        if pinger is not None:
            pinger.stopping()
            pinger.close()
        await ctx.close()
    return result


async def run_demo_kiosk(data: Path, options: UIOptions, script: Script | None = None) -> Any:
    """`run_kiosk` on the demo's embedded environment, owning the data dir's lock."""
    from kiosk.data_lock import DataLock

    environment = load_environment("demo")
    with DataLock(data) as lock, environment(data, terminal_latency_s=options.terminal_latency_s) as env:
        return await run_kiosk(env.settings, data, options, lock=lock, env=env, script=script)


# --- the command line ---------------------------------------------------------------------------

def _size(text: str) -> str:
    w, sep, h = text.partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) >= 320 and int(h) >= 320):
        raise argparse.ArgumentTypeError(f"not a window size like 720x1280: {text!r}")
    return text


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ui", parents=[common], help="run the kiosk with its touch screen (Kivy)",
                       description="Run the kiosk with its touch screen: fullscreen, no cursor, Escape ignored "
                                   "(--windowed for development). --demo uses the embedded back-office and simulators.")
    p.add_argument("--demo", action="store_true", help="the demo's embedded back-office and simulated devices")
    p.add_argument("--windowed", action="store_true", help="a window with a cursor (development), not kiosk mode")
    p.add_argument("--size", type=_size, default=DEFAULT_SIZE, help=f"window size (default {DEFAULT_SIZE})")
    p.add_argument("--dpi", type=float, default=DEFAULT_DPI, help=f"the panel's dpi (default {DEFAULT_DPI:g})")
    p.add_argument("--terminal-latency", type=float, default=1.5, metavar="SECONDS",
                   help="--demo: how long the simulated terminal takes to answer (default 1.5)")
    p.set_defaults(func=handle_ui)
    t = sub.add_parser("ui-tour", parents=[common], help="save a PNG of every screen in Persian and English",
                       description="Walk every screen of the touch UI in Persian and English on the demo "
                                   "environment and save one PNG per screen and language.")
    t.add_argument("--out", type=Path, required=True, help="directory for the PNGs")
    t.add_argument("--size", type=_size, default=DEFAULT_SIZE)
    t.add_argument("--dpi", type=float, default=DEFAULT_DPI)
    t.set_defaults(func=handle_tour)


def handle_ui(args: argparse.Namespace) -> int:
    from kiosk.paths import data_dir

    data = data_dir(args.data_dir, writable=True)
    options = UIOptions(windowed=args.windowed, size=args.size, dpi=args.dpi,
                        terminal_latency_s=args.terminal_latency)
    if args.demo:
        load_environment("demo")  # says which extra to install before any window opens
        configure_kivy(options, data)
        asyncio.run(run_demo_kiosk(data, options))
        return 0
    from kiosk.settings import load_settings

    settings = load_settings(data)  # a data dir without kiosk.json is refused before Kivy starts
    configure_kivy(options, data)
    asyncio.run(run_kiosk(settings, data, options))
    return 0


def handle_tour(args: argparse.Namespace) -> int:
    import tempfile

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    options = UIOptions(windowed=True, size=args.size, dpi=args.dpi, idle_s=3600, warn_s=20,
                        terminal_latency_s=0.0, hold_steps=True)
    with tempfile.TemporaryDirectory(prefix="kiosk-ui-tour-") as tmp:
        data = Path(tmp)
        os.chmod(data, 0o700)
        configure_kivy(options, data)
        from screens.tour import tour

        saved = asyncio.run(run_demo_kiosk(data, options, lambda ui, app, ctx, env: tour(ui, ctx, env, out)))
    for path in saved:
        print(path)
    print(f"kiosk ui-tour: {len(saved)} screenshots in {out}", file=sys.stderr)
    return 0


__all__ = ["UIOptions", "configure_kivy", "load_environment", "register", "run_demo_kiosk", "run_kiosk"]
