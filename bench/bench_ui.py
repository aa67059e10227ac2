"""The touch UI's text: how long a whole screen's labels take to draw when the language button
is pressed (every label re-renders through kiosk.text.paragraph: wrap in logical order, shape
each line with raqm, paint the bitmap). Prints one JSON object.

Screens measured: home (ten labels), the fee confirmation, an outcome with tracking code and
transaction number, and the keypad (twelve keys), each drawn in Persian then English with the
widths the 720-pixel-wide UI gives them. Cold: the measuring caches emptied first, as after a
switch to a language not drawn yet; warm: drawn again.

Baseline in the same run: the same strings drawn by Pillow + raqm as one line each into an
image of the same width (no wrapping, no per-line alignment): what the paragraph layout adds.

Target: a whole screen re-rendered in <= 100 ms cold at p95 (a switch that feels instant).

The app (issue 10, Performance), against a bare Kivy app (one Label) measured in the same run;
each app in its own subprocess, offscreen (SDL_VIDEODRIVER=offscreen), same window and config:

- cold start: from spawning the process to the first frame flipped after the attract screen
  (every label's bitmap made) is up, <= 2.0x the bare app's start to its label drawn. The
  kiosk's start is the real one: KioskContext (journal, devices over their wires), recovery,
  the outbox worker, Kivy. The back-office and simulators run in this (the parent) process,
  as they would on other machines, so they are in neither figure. The two apps' starts
  alternate (bare, kiosk, bare, …) and the medians are compared; each start's CPU seconds to
  its first frame are reported too (`*_start_cpu_s`), less at the mercy of a shared machine.
- peak memory (VmHWM) after a fee paid by touch and the scripted sessions, <= 1.5x the
  bare app's peak. Also reported, to tell what the kiosk loads from what its sessions draw:
  each app's resident memory when its first screen is drawn (`*_rss_at_drawn_mb`).
- touch to the next screen drawn: from a tap's touch-up posted to Kivy to the first frame
  flipped after the next screen is shown, over every screen-changing tap; p95 <= 100 ms.
- no leak: resident memory (after gc) after N scripted sessions within 10 % of after the
  first 10. A session: attract, home, the language switch (every other session), the fee's
  how-to-enter question, the keypad with six digits typed, Cancel, back to attract; the first
  session pays a fee instead (confirm, the terminal, the receipt, the outcome).

`python bench/bench_ui.py [ROUNDS] [--sessions N] [--starts N]` (defaults 20, 200 and 3; about 3
minutes). `--quick` is `2 --sessions 10`: the starts, the memory at the first frame and the start
ratios as in the full run, in about a minute (the leak and peak figures then cover 10 sessions).
`--help` prints this text.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from kiosk.messages_ui import render
from kiosk.text.paragraph import render_paragraph
from kiosk.text.shaping import font, text_length

TARGET_SCREEN_P95_MS = 100.0
WIDTH = 688  # the body's width in a 720-pixel window

SCREENS: dict[str, list[tuple[str, dict[str, Any], int, int]]] = {
    "home": [("ui.kiosk_name", {}, 40, WIDTH - 200), ("ui.choose_service", {}, 38, WIDTH)]
    + [(k, {}, 32, 338) for k in ("fee.title", "topup.title", "ui.balance.title", "ticket.title",
                                  "card_sale.title", "collect.title")]
    + [("ui.lang_toggle", {}, 30, 180), ("ui.cancel", {}, 34, WIDTH)],
    "confirm": [("fee.confirm", {"service_fa": "عوارض نوسازی — مهر ۱۴۰۳", "service_en": "Renovation fee",
                                 "amount_rials": 1_930_000}, 38, WIDTH),
                ("ui.bill_ids", {"bill_id": "11100120161", "payment_id": "193030711"}, 28, WIDTH),
                ("ui.confirm", {}, 34, 336), ("ui.cancel", {}, 34, 336)],
    "outcome": [("fee.paid", {"tracking": "190057936417"}, 38, WIDTH),
                ("ui.transaction", {"tx": "kiosk-demo-01-20261130-0353fcafb50b7a"}, 26, WIDTH),
                ("ui.receipt_qr", {}, 30, WIDTH), ("ui.done", {}, 34, WIDTH)],
    "keypad": [(f"#{d}", {}, 52, 130) for d in "0123456789"] + [("ui.clear", {}, 30, 130), ("ui.delete", {}, 30, 130)],
}


def _text(key: str, lang: str, params: dict[str, Any]) -> str:
    if key.startswith("#"):
        digit = key[1:]
        return digit if lang == "en" else "۰۱۲۳۴۵۶۷۸۹"[int(digit)]
    return render(key, lang, **params)


def _clear_caches() -> None:
    text_length.cache_clear()


def _screen_paragraphs(labels: list[tuple[str, dict[str, Any], int, int]], lang: str) -> None:
    for key, params, size, width in labels:
        render_paragraph(_text(key, lang, params), width, size, lang=lang)


def _screen_baseline(labels: list[tuple[str, dict[str, Any], int, int]], lang: str) -> None:
    direction = "rtl" if lang == "fa" else "ltr"
    for key, params, size, width in labels:
        img = Image.new("L", (width, int(size * 1.6)), 0)
        ImageDraw.Draw(img).text((0, 0), _text(key, lang, params), font=font(size), fill=255,
                                 direction=direction, language="fa" if lang == "fa" else None)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(rounds: int = 20) -> dict[str, Any]:
    for labels in SCREENS.values():  # fonts loaded, code paths warm: not what is measured
        _screen_paragraphs(labels, "fa")
    result: dict[str, Any] = {"bench": "ui_text", "rounds": rounds, "screens": {}}
    worst_cold_p95 = 0.0
    for name, labels in SCREENS.items():
        cold: list[float] = []
        warm: list[float] = []
        base: list[float] = []
        for i in range(rounds):
            lang = "en" if i % 2 else "fa"
            _clear_caches()
            t0 = time.perf_counter()
            _screen_paragraphs(labels, lang)
            cold.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            _screen_paragraphs(labels, lang)
            warm.append((time.perf_counter() - t0) * 1000)
            _clear_caches()
            t0 = time.perf_counter()
            _screen_baseline(labels, lang)
            base.append((time.perf_counter() - t0) * 1000)
        row = {
            "labels": len(labels),
            "cold_ms_p50": round(statistics.median(cold), 2), "cold_ms_p95": round(_p(cold, 0.95), 2),
            "warm_ms_p50": round(statistics.median(warm), 2),
            "baseline_one_line_ms_p50": round(statistics.median(base), 2),
        }
        row["layout_over_baseline"] = round(row["cold_ms_p50"] / max(row["baseline_one_line_ms_p50"], 1e-6), 2)
        result["screens"][name] = row
        worst_cold_p95 = max(worst_cold_p95, row["cold_ms_p95"])
    result["worst_screen_cold_ms_p95"] = round(worst_cold_p95, 2)
    result["target_screen_ms_p95"] = TARGET_SCREEN_P95_MS
    result["ok"] = worst_cold_p95 <= TARGET_SCREEN_P95_MS
    return result


# --- the app against a bare Kivy app -------------------------------------------------------------

TARGET_START_RATIO = 2.0
TARGET_PEAK_RATIO = 1.5
TARGET_TOUCH_P95_MS = 100.0
TARGET_LEAK = 0.10
ROOT = Path(__file__).resolve().parents[1]

_COMMON = textwrap.dedent('''
    import asyncio, gc, json, os, sys, time
    from pathlib import Path
    from kiosk.ui_main import UIOptions, configure_kivy

    data = Path(sys.argv[1])
    options = UIOptions(windowed=True, idle_s=3600, warn_s=20)
    configure_kivy(options, data)

    def rss():
        gc.collect()
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def peak():
        # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a
        # large process (pytest after the whole suite) reported its parent's peak
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/self/status")

    def report(**kw):
        print("BENCH " + json.dumps(kw), flush=True)

    def cpu():
        """CPU seconds this process used (every thread: Kivy's, the GL rasterizer's, executors')."""
        t = os.times()
        return t.user + t.system

    class Frames:
        """Frames as they are flipped: a predicate checked right after each frame is drawn (so
        it says what that frame shows) and the time of the first frame for which it holds."""
        def __init__(self):
            from kivy.core.window import Window
            self.waiters = []
            Window.bind(on_flip=self._flipped)  # dispatched only after a frame was drawn
        def _flipped(self, *_):
            now = time.monotonic()
            keep = []
            for predicate, fut in self.waiters:
                if fut.done():
                    continue
                try:
                    ok = predicate is None or predicate()
                except Exception as exc:
                    fut.set_exception(exc)
                    continue
                if ok:
                    fut.set_result(now)
                else:
                    keep.append((predicate, fut))
            self.waiters = keep
        def watch(self, predicate=None):
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append((predicate, fut))
            return fut
        async def when(self, predicate=None, limit=60.0):
            return await asyncio.wait_for(self.watch(predicate), limit)
        async def next(self, limit=1.0):
            """The next frame, or now when nothing needed drawing within `limit`."""
            try:
                return await self.when(None, limit)
            except asyncio.TimeoutError:
                return time.monotonic()
''')

BARE = _COMMON + textwrap.dedent('''
    from kivy.app import App
    from kivy.uix.label import Label

    class Bare(App):
        def build(self):
            self.label = Label(text="City Kiosk", font_size=40)
            self.frames = Frames()  # Kivy binds a method weakly: keep the object
            self.drawn = self.frames.watch(lambda: self.label.texture is not None)
            return self.label

    async def main():
        app = Bare()
        task = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
        while getattr(app, "drawn", None) is None:
            if task.done():
                task.result()
                raise RuntimeError("the app stopped before it was built")
            await asyncio.sleep(0.005)
        drawn = await asyncio.wait_for(app.drawn, 60)
        report(event="drawn", t=drawn, rss=rss(), cpu=cpu())
        await asyncio.sleep(1.0)
        report(event="done", peak=peak(), rss=rss())
        app.stop()
        await task

    asyncio.run(main())
''')

KIOSK = _COMMON + textwrap.dedent('''
    from kiosk.settings import load_settings
    from kiosk.ui_main import run_kiosk

    sessions, marks = int(sys.argv[2]), {10, int(sys.argv[2])}
    owner_code = sys.argv[3]

    async def script(ui, app, ctx, env):
        from kivy.base import EventLoop
        from screens.driver import Citizen, Touch
        from screens.rtl import RTLLabel
        frames = Frames()
        shown = [0]
        ui.listeners.append(lambda _name: shown.__setitem__(0, shown[0] + 1))
        c = Citizen(ui, timeout=60)
        from kiosk.ui_main import between_sessions
        # as `kiosk ui` runs them: between two citizens the blockers re-read and the heap trimmed
        runner = asyncio.ensure_future(ui.run_sessions(ctx, on_idle=lambda: between_sessions(ui.status, ctx)))

        def ready(name):
            return lambda: ui.screen == name and all(w.texture is not None for w in c.labels())

        drawn = await frames.when(ready("attract"))
        report(event="drawn", t=drawn, rss=rss(), cpu=cpu())
        latencies = []

        async def tap(choice_id=None, widget=None, changes=True):
            w = widget if widget is not None else c.button(choice_id)
            # a screen just built may still be laid out (slowly, on a loaded machine): tap where
            # the widget stays for a frame, not where it was first put (as screens.driver does);
            # the latency is timed from the touch's end, so this wait is not in the figure
            x, y = w.to_window(*w.center)
            for _ in range(40):
                await frames.next(0.05)
                now = w.to_window(*w.center)
                if now == (x, y):
                    break
                x, y = now
            touch = Touch(x, y)
            EventLoop.post_dispatch_input("begin", touch)
            await frames.next(0.1)
            before = shown[0]
            EventLoop.post_dispatch_input("end", touch)
            t0 = time.monotonic()
            if changes:
                t1 = await frames.when(lambda: shown[0] > before and all(l.texture is not None for l in c.labels()))
                latencies.append((t1 - t0) * 1000)
            else:
                await frames.next(0.3)
                await frames.next(0.3)

        async def finish():
            while ui.screen != "attract":
                if ui.screen == "confirm":
                    await tap("yes")
                elif ui.screen == "outcome":
                    await c.screen("outcome")
                    await tap("done")
                elif ui.screen == "error":
                    await c.screen("error")
                    await tap("ok")
                else:
                    await asyncio.sleep(0.02)

        owner = await asyncio.to_thread(ctx.backoffice.fee_slips, national_code=owner_code)
        slip = next(s for s in owner.slips if s.status == "unpaid")
        paid = None
        for n in range(1, sessions + 1):
            await c.until(ready("attract"), "attract")
            await tap("start")
            if n % 2 == 0:
                await tap(widget=ui.lang_button, changes=False)
            await tap("fee_payment")
            await c.until(lambda: ui.screen_key == "fee.how_to_enter", "how to enter")
            await tap("manual")
            if n == 1:  # the first citizen pays: confirm, terminal, receipt, outcome
                for d in slip.bill_id:
                    await tap(d, changes=False)
                await tap("ok")
                for d in slip.payment_id:
                    await tap(d, changes=False)
                await tap("ok")
                await c.until(lambda: ui.screen == "confirm", "confirm")
                await finish()
                paid = str(ctx.journal.state_of(ui.last_outcome.transaction_id))
            else:
                for d in "123456":
                    await tap(d, changes=False)
                await tap("cancel")
                await finish()
            if n in marks:
                report(event="sessions", n=n, rss=rss())
        report(event="done", peak=peak(), rss=rss(), latencies_ms=latencies, paid=paid)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    settings = load_settings(data)
    asyncio.run(run_kiosk(settings, data, options, script=script))
''')


def _child_env() -> dict[str, str]:
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "KIVY_NO_ARGS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _spawn(code: str, *args: str, timeout: float) -> tuple[float, list[dict[str, Any]]]:
    """Run one app; its start (spawn to first frame drawn, s) and what it reported. The code
    runs from a file: Kivy's App looks for its .kv file beside the file its class is in."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="bench_ui_app_", delete=False) as f:
        f.write(code)
    try:
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, f.name, *args], capture_output=True, text=True, timeout=timeout,
                             env=_child_env(), cwd=ROOT)
    finally:
        os.unlink(f.name)
    events = [json.loads(line[6:]) for line in out.stdout.splitlines() if line.startswith("BENCH ")]
    if out.returncode != 0 or not events or events[-1].get("event") != "done":
        raise RuntimeError(f"the app failed (exit {out.returncode}): {out.stderr[-3000:]}")
    drawn = next(e for e in events if e["event"] == "drawn")
    return drawn["t"] - t0, events


def run_app(sessions: int = 200, *, starts: int = 3, timeout: float = 1800) -> dict[str, Any]:
    """The kiosk app against the bare Kivy app (see the module's docstring)."""
    from backoffice.seed import DEMO_NATIONAL_CODE
    from kiosk_demo.environment import demo_environment

    sessions = max(sessions, 10)
    bare_starts: list[float] = []
    bare_peaks: list[int] = []
    bare_drawn: list[dict[str, Any]] = []
    kiosk_starts: list[float] = []
    kiosk_drawn: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ui-kiosk-") as tmp:
        data = Path(tmp)
        os.chmod(data, 0o700)
        with demo_environment(data, terminal_latency_s=0.0) as env:
            env.settings.save(data / "kiosk.json")
            # the two apps' starts alternate, so a load that comes and goes on a shared machine
            # falls on both alike; the last kiosk start runs the sessions, the others one each
            for i in range(starts):
                with tempfile.TemporaryDirectory(prefix="bench-ui-bare-") as bare_tmp:
                    start, events = _spawn(BARE, bare_tmp, timeout=120)
                bare_starts.append(start)
                bare_peaks.append(events[-1]["peak"])
                bare_drawn.append(next(e for e in events if e["event"] == "drawn"))
                last = i == starts - 1
                start, events = _spawn(KIOSK, str(data), str(sessions) if last else "10", DEMO_NATIONAL_CODE,
                                       timeout=timeout if last else 300)
                kiosk_starts.append(start)
                kiosk_drawn.append(next(e for e in events if e["event"] == "drawn"))
    done = events[-1]
    marks = {e["n"]: e["rss"] for e in events if e["event"] == "sessions"}
    latencies = done["latencies_ms"]
    bare_start = statistics.median(bare_starts)
    kiosk_start = statistics.median(kiosk_starts)
    bare_peak = statistics.median(bare_peaks)
    kiosk_peak = done["peak"]
    after_10, after_n = marks[10], marks[sessions]
    result: dict[str, Any] = {
        "bench": "ui_app", "sessions": sessions, "starts": starts, "paid": done["paid"],
        "bare_start_s": round(bare_start, 3), "kiosk_start_s": round(kiosk_start, 3),
        "start_ratio": round(kiosk_start / bare_start, 2),
        # CPU seconds to the first frame: what the start costs, less at the mercy of other load
        "bare_start_cpu_s": round(statistics.median(e["cpu"] for e in bare_drawn), 3),
        "kiosk_start_cpu_s": round(statistics.median(e["cpu"] for e in kiosk_drawn), 3),
        "bare_peak_mb": round(bare_peak / 2 ** 20, 1), "kiosk_peak_mb": round(kiosk_peak / 2 ** 20, 1),
        "peak_ratio": round(kiosk_peak / bare_peak, 2),
        "bare_rss_at_drawn_mb": round(statistics.median(e["rss"] for e in bare_drawn) / 2 ** 20, 1),
        "kiosk_rss_at_drawn_mb": round(statistics.median(e["rss"] for e in kiosk_drawn) / 2 ** 20, 1),
        "touches": len(latencies), "touch_ms_p50": round(statistics.median(latencies), 1),
        "touch_ms_p95": round(_p(latencies, 0.95), 1), "touch_ms_max": round(max(latencies), 1),
        "rss_after_10_mb": round(after_10 / 2 ** 20, 1), f"rss_after_{sessions}_mb": round(after_n / 2 ** 20, 1),
        "rss_growth": round(after_n / after_10 - 1, 3),
        "targets": {"start_ratio": TARGET_START_RATIO, "peak_ratio": TARGET_PEAK_RATIO,
                    "touch_ms_p95": TARGET_TOUCH_P95_MS, "rss_growth": TARGET_LEAK},
    }
    result["ok"] = {
        "start": result["start_ratio"] <= TARGET_START_RATIO,
        "peak": result["peak_ratio"] <= TARGET_PEAK_RATIO,
        "touch": result["touch_ms_p95"] <= TARGET_TOUCH_P95_MS,
        "leak": result["rss_growth"] <= TARGET_LEAK,
        "paid": done["paid"] == "COMPLETED",
    }
    return result


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    if "--quick" in args:
        args.remove("--quick")
        args = ["2", "--sessions", "10", *args]
    options = {"--sessions": 200, "--starts": 3}
    for name in options:
        while name in args:
            i = args.index(name)
            options[name] = int(args[i + 1])
            del args[i:i + 2]
    if len(args) > 1 or (args and not args[0].isdigit()):
        print(f"usage: python bench/bench_ui.py [ROUNDS] [--sessions N] [--starts N] [--quick]; not {args}",
              file=sys.stderr)
        return 2
    rounds = int(args[0]) if args else 20
    text = run(rounds)
    app = run_app(options["--sessions"], starts=options["--starts"])
    ok = text["ok"] and all(app["ok"].values())
    print(json.dumps({"bench": "ui", "text": text, "app": app, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
