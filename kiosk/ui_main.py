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
import contextlib
import importlib.metadata
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.child_process import end_with_parent
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


def _trim_heap() -> None:
    """Give the heap's freed pages back to the OS (glibc's malloc_trim; nothing elsewhere).
    Drawing a screen makes and drops large bitmaps (Pillow paragraphs, GL uploads); glibc keeps
    what was freed, so a kiosk's resident memory crept up session after session with no object
    left alive (bench/bench_ui.py: +14 % over 200 sessions, flat with a trim per session)."""
    import ctypes
    import ctypes.util

    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def between_sessions(status: Any, ctx: Any) -> None:
    """What the kiosk does each time it goes back to attract: the kiosk-wide blockers looked at
    again, and the memory the last citizen's screens used handed back."""
    from kiosk.status import refresh_blockers

    refresh_blockers(status, ctx)
    _trim_heap()


async def run_kiosk(settings: Any, data: Path, options: UIOptions, *, lock: Any = None, env: Any = None,
                    script: Script | None = None) -> Any:
    """Open the kiosk, recover, start the screens; run citizen sessions until the window
    closes, or run `script(ui, app, ctx, env)` and stop (tests, the tour)."""
    from kiosk.context import KioskContext
    from kiosk.recovery import Recovery
    from kiosk.service_guard import JournalBroken
    from kiosk.status import StatusFile, for_context
    from screens.app import KioskApp, KivyUI

    ctx = await KioskContext.open(settings, data, lock=lock)
    result: Any = None
    pinger: Any = None
    status_file: StatusFile | None = None
    broken = False
    try:
        try:
            await Recovery(ctx.journal, ctx.money).run()
        except JournalBroken:
            log.critical("journal fails verification: the kiosk is out of service")
            broken = True
        ctx.start_outbox_worker()
        status = for_context(ctx)
        status_file = StatusFile(data).attach(status)  # device-status.json, for the fleet agent
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
            scripted = asyncio.ensure_future(script(ui, app, ctx, env))
            try:
                await asyncio.wait({scripted, app_task}, return_when=asyncio.FIRST_COMPLETED)
                if not scripted.done():  # the window closed (or Kivy failed) under the script
                    if app_task.exception() is None:  # closed: a script serving citizens ends now too
                        await asyncio.wait({scripted}, timeout=10)
                    if not scripted.done():
                        scripted.cancel()
                        await asyncio.gather(scripted, return_exceptions=True)
                        app_task.result()
                        raise RuntimeError("the touch UI's window closed while its script was running")
                result = scripted.result()
            finally:
                if not scripted.done():
                    scripted.cancel()
                    await asyncio.gather(scripted, return_exceptions=True)
                app.stop()
                await app_task
        else:
            sessions = asyncio.ensure_future(ui.run_sessions(ctx, on_idle=lambda: between_sessions(status, ctx)))
            try:
                await app_task
            finally:
                sessions.cancel()
                await asyncio.gather(sessions, return_exceptions=True)
    finally:
        if pinger is not None:
            pinger.stopping()
            pinger.close()
        if status_file is not None:
            status_file.close()
        await ctx.close()
    return result


async def run_demo_kiosk(data: Path, options: UIOptions, script: Script | None = None, *,
                         panel_port: int | None = None, fleet: Any = None) -> Any:
    """`run_kiosk` on the demo's embedded environment, owning the data dir's lock. With
    `panel_port` (0: any free port) the device simulator panel is served over the same
    environment for as long as the kiosk runs, and its address printed first (`panel: URL`),
    with the fleet dashboard's when `fleet` (provisioning.demo.KioskFleet) has one."""
    from kiosk.data_lock import DataLock

    environment = load_environment("demo")
    with DataLock(data) as lock, environment(data, terminal_latency_s=options.terminal_latency_s) as env:
        if panel_port is None:
            return await run_kiosk(env.settings, data, options, lock=lock, env=env, script=script)
        with _serve_panel(env, panel_port) as panel:
            _print_panel(panel.url, env, fleet)
            return await run_kiosk(env.settings, data, options, lock=lock, env=env, script=script)


def _serve_panel(env: Any, port: int) -> AbstractContextManager[Any]:
    # the panel belongs to the demo harness, as the environment it drives does: imported only
    # here, when a demo kiosk asks for it (the appliance never gets this far)
    try:
        from kiosk_demo.panel import serve_panel
    except ImportError as exc:
        raise DemoUnavailable(str(exc)) from exc
    return serve_panel(env, port=port)  # type: ignore[no-any-return]


def _print_panel(url: str, env: Any, fleet: Any = None) -> None:
    printer = next((d.options for d in env.settings.devices if d.name == "printer"), {})
    print(f"panel: {url}\n"
          "  پنل شبیه‌سازها: کارت، فیش، چاپگر و پایانهٔ پرداخت را از مرورگر بگردانید / the device simulator "
          "panel: put cards on the reader, scan slips, set the printer and the terminal's answer, see what "
          "was printed\n"
          f"  back-office   {env.backoffice.url}\n"
          f"  terminal      {env.terminal.url}\n"
          f"  printer       {printer.get('host')}:{printer.get('port')} (ESC/POS, raw TCP)\n"
          f"  data dir      {env.data_dir}", flush=True)
    for line in fleet.dashboard_lines() if fleet is not None else ():
        print(f"  {line}", flush=True)


# --- a virtual screen (`kiosk ui-demo` with no display) ---------------------------------------------


class VirtualScreen:
    """An Xvfb X server on a display number it picks itself (-displayfd), listening on no TCP
    port: the touch UI draws on it as on a real screen (GLX with Mesa's software renderer), and
    nothing appears on this machine. `start()` returns the display (":N") or None when Xvfb is
    not installed. The X server ends with the thread that started it, even one killed outright
    (PR_SET_PDEATHSIG): start it from the thread that outlives its use."""

    def __init__(self, size: str = DEFAULT_SIZE, *, timeout_s: float = 20.0) -> None:
        self.size = size
        self.timeout_s = timeout_s
        self.display: str | None = None
        self._proc: Any = None

    @property
    def pid(self) -> int | None:
        """The X server's process id while it runs (a display number is reused by the next
        Xvfb once this one ends; its pid says whether this one is gone)."""
        proc = getattr(self, "_proc", None)
        return proc.pid if proc is not None else None

    def start(self) -> str | None:
        import select
        import shutil
        import subprocess
        import tempfile

        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            return None
        width, _, height = self.size.partition("x")
        read_fd, write_fd = os.pipe()
        errors = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                [xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp",
                 "-noreset"], pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=errors, start_new_session=True,
                preexec_fn=end_with_parent(umask=None))  # a kiosk killed outright takes its X server along
            os.close(write_fd)
            write_fd = -1
            text = b""
            end = time.monotonic() + self.timeout_s
            while not text.endswith(b"\n"):
                left = end - time.monotonic()
                if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                    raise RuntimeError(f"Xvfb did not start in {self.timeout_s:g} s")
                chunk = os.read(read_fd, 16)
                if not chunk:  # Xvfb exited
                    errors.seek(0)
                    raise RuntimeError("Xvfb stopped: " + errors.read().decode(errors="replace")[-500:])
                text += chunk
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
            errors.close()
        self.display = ":" + text.decode().strip()
        return self.display

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except Exception:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> "VirtualScreen":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def has_display(environ: Any = None) -> str | None:
    """The display the UI would open its window on ($DISPLAY or $WAYLAND_DISPLAY), or None."""
    env = os.environ if environ is None else environ
    return env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or None


# --- `kiosk ui-demo`: what `make run` runs ------------------------------------------------------

def _stop_on_signals(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM end the kiosk cleanly (the flows unwound, the window closed)."""
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass


def _serve(stop: asyncio.Event) -> Script:
    """Citizen sessions until Ctrl-C, SIGTERM or the window's close."""

    async def script(ui: Any, app: Any, ctx: Any, env: Any) -> None:
        app.bind(on_stop=lambda *_: stop.set())
        _stop_on_signals(stop)
        sessions = asyncio.ensure_future(ui.run_sessions(ctx, on_idle=lambda: between_sessions(ui.status, ctx)))
        try:
            await stop.wait()
        finally:
            sessions.cancel()
            await asyncio.gather(sessions, return_exceptions=True)

    return script


#: on every screen: not worth repeating in a transcript
_CHROME = frozenset({"English", "فارسی", "کیوسک شهر", "City Kiosk"})


def _say(screen: str, texts: list[str]) -> None:
    # a keypad's keys (one character each) are left out too
    shown = " · ".join(t.replace("\n", " ") for t in texts if t not in _CHROME and len(t) > 1)
    print(f"  {screen:<8} {shown[:150]}", flush=True)


async def _finish_session(c: Any, ui: Any, shots: Path | None, timeout: float = 120.0) -> list[str]:
    """After the citizen's last answer: confirm, then press Done / OK on whatever outcome or
    error comes, until the kiosk is back on attract. Returns the outcome's (or error's) texts."""
    end = time.monotonic() + timeout
    last: list[str] = []
    while ui.screen != "attract":
        if time.monotonic() > end:
            raise TimeoutError(f"the session did not end: screen {ui.screen} {ui.screen_key!r}")
        screen = ui.screen
        if screen == "confirm":
            await c.press("yes")
        elif screen == "digits":  # no slip came in time (the scanner's wait ended): the keypad; leave
            await c.press("cancel")
        elif screen in ("outcome", "error"):
            last = await c.screen(screen)
            _say(screen, last)
            if shots is not None:
                c.shown_png(shots / f"{len(list(shots.glob('*.png'))) + 1:02d}-{screen}.png")
            await c.press("done" if screen == "outcome" else "ok")
        else:
            await asyncio.sleep(0.1)
    return last


def _touch_walk(stop: asyncio.Event, *, hold: bool, shots: Path, fleet: Any = None) -> Script:
    """On the virtual screen: a scripted citizen pays a fee by touch (the same taps a person
    makes), one screenshot per screen in `shots`; then, when `hold`, the kiosk stays up until
    Ctrl-C with a citizen waiting at "how do you enter the slip?" for a slip scanned on the panel."""

    async def script(ui: Any, app: Any, ctx: Any, env: Any) -> dict[str, Any]:
        from screens.driver import Citizen

        _stop_on_signals(stop)
        owner_code = load_environment("demo-owner")
        owner = await asyncio.to_thread(ctx.backoffice.fee_slips, national_code=owner_code)
        slip = next(s for s in owner.slips if s.status == "unpaid")
        c = Citizen(ui, timeout=90)
        sessions = asyncio.ensure_future(ui.run_sessions(ctx, on_idle=lambda: between_sessions(ui.status, ctx)))
        n = 0

        async def look(name: str, key: str | None = None) -> list[str]:
            nonlocal n
            texts = await c.screen(name, key)
            n += 1
            c.shown_png(shots / f"{n:02d}-{name}.png")
            _say(name, texts)
            return texts

        try:
            print(f"citizen (by touch): pays {slip.description_fa} ({slip.amount_rials:,} rials), typing its ids",
                  flush=True)
            await look("attract")
            await c.press("start")
            await look("home")
            await c.press("fee_payment")
            await look("choose", "fee.how_to_enter")
            await c.press("manual")
            await look("digits", "fee.enter_bill_id")
            await c.type_digits(slip.bill_id)
            await c.press("ok")
            await c.screen("digits", "fee.enter_payment_id")
            await c.type_digits(slip.payment_id)
            _say("digits", c.texts())
            await c.press("ok")
            await look("confirm", "fee.confirm")
            outcome = await _finish_session(c, ui, shots)
            tx = ui.last_outcome.transaction_id if ui.last_outcome is not None else None
            state = str(ctx.journal.state_of(tx)) if tx else "no transaction"
            print(f"touch walk-through: {state} (transaction {tx}); screenshots in {shots}", flush=True)
            if fleet is not None and fleet.kiosk_id:  # the running kiosk's status, as its agent reported it,
                await asyncio.to_thread(fleet.say_status)  # and its journal reconciled with the back-office
                await asyncio.to_thread(fleet.reconcile, env.backoffice.url, env.backoffice_db_url)
            if hold:
                await _hold(c, ui, stop, shots)
            return {"state": state, "tx": tx, "outcome": outcome}
        finally:
            sessions.cancel()
            await asyncio.gather(sessions, return_exceptions=True)

    return script


async def _hold(c: Any, ui: Any, stop: asyncio.Event, shots: Path) -> None:
    print("\nThe kiosk stays up on the virtual screen until Ctrl-C. A citizen stands at it with a slip:\n"
          "scan one from the panel's list (and choose the terminal's answer there) to have it paid;\n"
          f"the screen as it is now: {shots / 'screen.png'}", flush=True)

    def snap(_name: str) -> None:  # the latest screen, for a person with no display to look at
        asyncio.get_running_loop().call_later(0.4, lambda: c.shown_png(shots / "screen.png"))

    ui.listeners.append(snap)

    async def citizen() -> None:
        while True:
            try:
                await c.until(lambda: ui.screen == "attract", "attract", timeout=600)
                await c.press("start")
                await c.screen("home")
                await c.press("fee_payment")
                await c.screen("choose", "fee.how_to_enter")
                print("  waiting for a slip scanned on the panel …", flush=True)
                await c.until(lambda: ui.screen_key != "fee.how_to_enter", "a scanned slip", timeout=10 ** 6)
                await _finish_session(c, ui, None)
            except (TimeoutError, LookupError) as exc:  # the screen is not what the script expected
                print(f"  the scripted citizen lost its way ({exc}); it starts again", flush=True)
                await asyncio.sleep(1)

    task = asyncio.ensure_future(citizen())
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
    finally:
        task.cancel()
        waiter.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
        ui.listeners.remove(snap)
        if ui.screen_key == "fee.how_to_enter":  # the citizen leaves: the flow stops its scanner read itself
            with contextlib.suppress(LookupError, TimeoutError):
                await c.press("cancel")
                await c.until(lambda: ui.screen == "attract", "attract", timeout=5)


def _quiet_kivy() -> None:
    """Kivy's start-up chatter (its version, the GL driver) stays out of the demo's transcript;
    its warnings and errors still show."""
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    logging.getLogger("kivy").setLevel(logging.ERROR)  # while Kivy reads (and first writes) its config
    os.environ.setdefault("KCFG_KIVY_LOG_LEVEL", "warning")  # what Kivy sets once it has read it


def handle_ui_demo(args: argparse.Namespace) -> int:
    from kiosk.paths import data_dir

    data = data_dir(args.data_dir, writable=True)
    load_environment("demo")  # says which extra to install before anything starts
    from provisioning.demo import KioskFleet  # the demo kiosk's own fleet (the [server] extra, as the demo)

    # the fleet server starts (and migrates its database) while the kiosk does other things
    fleet = KioskFleet(data).start()
    try:
        rc = _ui_demo(args, data, fleet)
        fleet.finish()
    finally:
        fleet.stop()
    return rc if fleet.error is None else (rc or 1)


def _ui_demo(args: argparse.Namespace, data: Path, fleet: Any) -> int:
    from kiosk.cli import main as kiosk_main

    hold = sys.stdin.isatty() if args.hold is None else args.hold
    display = has_display()

    def script_for(make: Callable[[asyncio.Event], Script]) -> Script:
        async def script(ui: Any, app: Any, ctx: Any, env: Any) -> Any:
            return await make(asyncio.Event())(ui, app, ctx, env)  # the event made on the kiosk's loop
        return script

    if display:
        print(f"display {display}: the kiosk opens in a window ({args.size}) with the demo's back-office and "
              "simulators; close the window or press Ctrl-C to stop", flush=True)
        options = UIOptions(windowed=True, size=args.size, dpi=args.dpi, terminal_latency_s=args.terminal_latency)
        fleet.join()  # before the kiosk holds the data dir: the configuration is written under its lock
        _quiet_kivy()
        configure_kivy(options, data)
        asyncio.run(run_demo_kiosk(data, options, _serving(), panel_port=args.panel_port, fleet=fleet))
        print("kiosk stopped", flush=True)
        return 0

    print("no display ($DISPLAY and $WAYLAND_DISPLAY are unset): the touch kiosk runs on a virtual screen "
          "that nothing shows, and the citizen's way through is printed here instead", flush=True)
    print("\n== 1. a citizen pays a fee, headless (kiosk demo --headless --script pay-fee)", flush=True)
    rc = kiosk_main(["demo", "--headless", "--script", "pay-fee", "--data-dir", str(data)])
    if rc != 0:
        return rc
    print("\n== the kiosk in a fleet: a fleet server on this machine, the kiosk's agent beside it", flush=True)
    fleet.join()  # enrolled, configured, commanded, the walk-through's journal uploaded
    shots = data / "ui-demo"
    shots.mkdir(exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    with VirtualScreen(args.size) as screen:
        where = screen.start()
        if where is not None:
            os.environ["DISPLAY"] = where
            if os.environ.get("SDL_VIDEODRIVER") == "offscreen":  # SDL draws on the X server, not offscreen
                del os.environ["SDL_VIDEODRIVER"]
            print(f"\n== 2. the touch kiosk on a virtual screen: Xvfb {where} (pid {screen.pid}), {args.size}", flush=True)
        else:
            os.environ["SDL_VIDEODRIVER"] = "offscreen"
            print("\n== 2. the touch kiosk on a virtual screen: SDL's offscreen driver (Xvfb is not installed: "
                  "apt install xvfb)", flush=True)
        options = UIOptions(windowed=True, size=args.size, dpi=args.dpi, idle_s=3600 if hold else 45.0,
                            terminal_latency_s=args.terminal_latency)
        _quiet_kivy()
        configure_kivy(options, data)
        result = asyncio.run(run_demo_kiosk(data, options, script_for(lambda stop: _touch_walk(stop, hold=hold,
                                                                                                 shots=shots,
                                                                                                 fleet=fleet)),
                                            panel_port=args.panel_port, fleet=fleet))
    if not hold:
        print("stdin is not a terminal, so the virtual-screen kiosk stops here (in a terminal, `make run` "
              "keeps it and the panel up until Ctrl-C)", flush=True)
    else:
        print("kiosk stopped", flush=True)
    return 0 if result.get("state") == "COMPLETED" else 1


# --- the command line ---------------------------------------------------------------------------

def _size(text: str) -> str:
    w, sep, h = text.partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) >= 320 and int(h) >= 320):
        raise argparse.ArgumentTypeError(f"not a window size like 720x1280: {text!r}")
    return text


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535, 0: any free port): {text!r}")
    return int(text)


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
    p.add_argument("--panel", action="store_true", help="--demo: serve the device simulator panel on 127.0.0.1 "
                   "over the same simulators and print its URL")
    p.add_argument("--panel-port", type=_port, default=0, metavar="PORT", help="--panel: its port (default: any free one)")
    p.set_defaults(func=handle_ui)
    t = sub.add_parser("ui-tour", parents=[common], help="save a PNG of every screen in Persian and English",
                       description="Walk every screen of the touch UI in Persian and English on the demo "
                                   "environment and save one PNG per screen and language.")
    t.add_argument("--out", type=Path, required=True, help="directory for the PNGs")
    t.add_argument("--size", type=_size, default=DEFAULT_SIZE)
    t.add_argument("--dpi", type=float, default=DEFAULT_DPI)
    t.set_defaults(func=handle_tour)
    d = sub.add_parser("ui-demo", parents=[common], help="what `make run` runs: the demo kiosk, its simulators and "
                       "their panel; in a window, or on a virtual screen with no display",
                       description="The touch kiosk on the demo's back-office and simulators with the device "
                                   "simulator panel (its URL is printed). With a display: a window until it is "
                                   "closed or Ctrl-C. With none: a citizen pays a fee headless (the transcript), "
                                   "then by touch on a virtual screen (Xvfb; screenshots saved); then, when stdin "
                                   "is a terminal (or --hold), the kiosk and the panel stay up until Ctrl-C.")
    d.add_argument("--size", type=_size, default=DEFAULT_SIZE, help=f"window size (default {DEFAULT_SIZE})")
    d.add_argument("--dpi", type=float, default=DEFAULT_DPI, help=f"the panel's dpi (default {DEFAULT_DPI:g})")
    d.add_argument("--terminal-latency", type=float, default=1.5, metavar="SECONDS",
                   help="how long the simulated terminal takes to answer (default 1.5)")
    d.add_argument("--panel-port", type=_port, default=0, metavar="PORT",
                   help="the simulator panel's port on 127.0.0.1 (default: any free one)")
    hold = d.add_mutually_exclusive_group()
    hold.add_argument("--hold", dest="hold", action="store_true", default=None,
                      help="with no display: keep the kiosk and panel up until Ctrl-C (default when stdin is a terminal)")
    hold.add_argument("--no-hold", dest="hold", action="store_false",
                      help="with no display: stop after the walk-throughs (default when stdin is not a terminal)")
    d.set_defaults(func=handle_ui_demo)


def handle_ui(args: argparse.Namespace) -> int:
    from kiosk.paths import data_dir

    data = data_dir(args.data_dir, writable=True)
    options = UIOptions(windowed=args.windowed, size=args.size, dpi=args.dpi,
                        terminal_latency_s=args.terminal_latency)
    # Ctrl-C and SIGTERM (systemd stopping the unit) end the sessions and close the window, so
    # the kiosk says STOPPING=1 and closes its journal instead of dying mid-frame
    if args.demo:
        load_environment("demo")  # says which extra to install before any window opens
        configure_kivy(options, data)
        asyncio.run(run_demo_kiosk(data, options, _serving(), panel_port=args.panel_port if args.panel else None))
        return 0
    if args.panel:
        raise DemoUnavailable("--panel drives the demo's simulators: use it with --demo")
    from kiosk.settings import load_settings

    settings = load_settings(data)  # a data dir without kiosk.json is refused before Kivy starts
    configure_kivy(options, data)
    asyncio.run(run_kiosk(settings, data, options, script=_serving()))
    return 0


def _serving() -> Script:
    """`_serve` with its stop event made on the running loop."""

    async def script(ui: Any, app: Any, ctx: Any, env: Any) -> None:
        await _serve(asyncio.Event())(ui, app, ctx, env)

    return script


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


__all__ = ["UIOptions", "VirtualScreen", "between_sessions", "configure_kivy", "has_display", "load_environment", "register",
           "run_demo_kiosk", "run_kiosk"]
