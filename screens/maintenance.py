"""Maintenance screens on the touch UI (issue 10, item 5), driving kiosk.maintenance.

A hidden entry: on the attract screen, a press held `hold_s` (3 s) in the top corner away from
the language button (a 15 mm square where the header's title is, empty on the attract screen:
top right in Persian, top left in English) opens maintenance over the attract screen, which
keeps waiting beneath — no citizen session can start meanwhile, and leaving puts the kiosk
back in its attract loop. Nothing else on any screen reacts to that corner.

Maintenance is refused, with the reason, while a citizen's transaction is open. Then our own
PIN keypad (the digits shown only as dots, never kept after the answer), the lockout's
messages, and the menu: device states and counters, test print, scanner test, card reader test,
paper refilled, today's totals, the end-of-day report, services in and out of service, the
transactions an operator must finish, and leaving. Two minutes without a touch leave
maintenance by themselves. Every word comes from kiosk/messages_maintenance.py (Persian first,
with the same language button as the citizen's screens).

`attach(ui, ctx)` is the one hook screens.app calls when citizen sessions start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from kivy.clock import Clock
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.fmt import to_persian_digits
from kiosk.maintenance import (PIN_MAX, PIN_MIN, Maintenance, MaintenanceError, MaintenanceSession, NoPinSet,
                               TransactionOpen, stored_pin_hash)
from screens.app import (BAD, CANCEL_BG, GOOD, INK, MIN_TARGET_MM, MUTED, SERVICES, WHITE, Filled, KivyUI, Row,
                         mm_px)
from screens.rtl import RTLLabel, TouchButton

log = logging.getLogger("kiosk.ui.maintenance")

DOT = "•"  # U+2022: the bundled Vazirmatn has it (it has no U+25CF)

#: (choice id, message key) of the menu, in order
MENU: tuple[tuple[str, str], ...] = (
    ("devices", "maint.devices"), ("test_print", "maint.test_print"), ("scan_test", "maint.scan_test"),
    ("card_read", "maint.card_read"), ("paper", "maint.paper_refilled"), ("totals", "maint.totals"),
    ("report", "maint.day_report"), ("services", "maint.services"), ("pending", "maint.needs_operator"),
)


class HiddenCorner(Widget):
    """Spread over the window but answering only in its spot: a `side` × `side` square at the
    top of the screen on the side away from the language button — where the header's title is,
    empty on the attract screen, in both languages. A press held `hold_s` there calls
    `on_long_press`; a shorter press does nothing. Touches elsewhere pass through untouched."""

    def __init__(self, ui: KivyUI, on_long_press: Callable[[], None], hold_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ui = ui
        self.on_long_press = on_long_press
        self.hold_s = hold_s
        self.side = mm_px(MIN_TARGET_MM)
        self._ev: Any = None

    def spot(self) -> tuple[float, float, float, float]:
        """(x, y, width, height) of the square, in the window's coordinates."""
        root = self.ui.root
        assert root is not None
        lang_button = self.ui.lang_button
        bx, _ = lang_button.to_window(*lang_button.center)
        x = root.width - self.side if bx < root.width / 2 else 0.0
        return x, root.height - self.side, self.side, self.side

    def spot_center(self) -> tuple[float, float]:
        x, y, w, h = self.spot()
        return x + w / 2, y + h / 2

    def on_touch_down(self, touch: Any) -> bool:
        x, y, w, h = self.spot()
        if not (x <= touch.x <= x + w and y <= touch.y <= y + h):
            return False
        touch.grab(self)
        if self._ev is not None:
            self._ev.cancel()
        self._ev = Clock.schedule_once(lambda _dt: self._fire(), self.hold_s)
        return True

    def on_touch_move(self, touch: Any) -> bool:
        return False

    def on_touch_up(self, touch: Any) -> bool:
        if touch.grab_current is not self:
            return False
        touch.ungrab(self)
        if self._ev is not None:
            self._ev.cancel()
            self._ev = None
        return True

    def _fire(self) -> None:
        self._ev = None
        self.on_long_press()


class Overlay(FloatLayout):
    """Maintenance's own screen over the attract screen: white, takes every touch."""

    def __init__(self, on_touch: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_touch = on_touch
        self.add_widget(Filled(WHITE, size_hint=(1, 1), pos_hint={"x": 0, "y": 0}))

    def on_touch_down(self, touch: Any) -> bool:
        self._on_touch()
        super().on_touch_down(touch)
        return True  # nothing beneath maintenance is ever pressed

    def on_touch_move(self, touch: Any) -> bool:
        super().on_touch_move(touch)
        return True

    def on_touch_up(self, touch: Any) -> bool:
        super().on_touch_up(touch)
        return True


class MaintenanceScreens:
    def __init__(self, ui: KivyUI, ctx: Any, *, hold_s: float = 3.0, idle_s: float = 120.0,
                 test_wait_s: float = 30.0) -> None:
        self.ui = ui
        self.ctx = ctx
        self.idle_s = idle_s
        self.test_wait_s = test_wait_s
        self.gate = Maintenance(ctx)
        self.corner = HiddenCorner(ui, self.open, hold_s, size_hint=(1, 1), pos_hint={"x": 0, "y": 0})
        self.overlay: Overlay | None = None
        self.task: asyncio.Task[None] | None = None
        self.session: MaintenanceSession | None = None
        self.screen = ""  # the maintenance screen shown ("" when closed): pin, menu, page, refused
        self.lang = ui.default_lang
        self._answer: asyncio.Future[str] | None = None
        self._digits = ""
        self._idle_ev: Any = None

    # --- the hidden entry ------------------------------------------------------------------
    def on_screen(self, name: str) -> None:
        """The citizen UI showed screen `name`: the corner is there on attract only."""
        root = self.ui.root
        if root is None:
            return
        if name == "attract" and self.corner.parent is None:
            root.add_widget(self.corner)
        elif name != "attract" and self.corner.parent is not None:
            self.corner.parent.remove_widget(self.corner)

    @property
    def hold_s(self) -> float:
        return self.corner.hold_s

    @hold_s.setter
    def hold_s(self, seconds: float) -> None:
        self.corner.hold_s = seconds

    def open(self) -> None:
        if self.task is not None and not self.task.done():
            return
        if self.ui.screen != "attract":  # a citizen is using the kiosk
            return
        self.task = asyncio.ensure_future(self._run())

    # --- the run -----------------------------------------------------------------------------
    async def _run(self) -> None:
        log.info("maintenance: entry opened")
        self.lang = self.ui.default_lang
        self._build()
        try:
            try:
                self.gate.refuse_if_busy()
            except TransactionOpen as exc:
                await self._page("maint.title", [(exc.key, dict(exc.context), BAD)], [("back", "maint.back")],
                                 screen="refused")
                return
            self.session = await self._pin()
            if self.session is None:
                return
            await self._menu()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("maintenance screen failed")
        finally:
            self._close()

    def _close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        self._digits = ""
        self._stop_idle()
        if self.overlay is not None and self.overlay.parent is not None:
            self.overlay.parent.remove_widget(self.overlay)
        self.overlay = None
        self.screen = ""
        self.on_screen(self.ui.screen)  # the corner again, on the attract screen still waiting beneath
        log.info("maintenance: closed, back to attract")

    # --- building ----------------------------------------------------------------------------
    def _build(self) -> None:
        assert self.ui.root is not None
        self.overlay = Overlay(self._touched, size_hint=(1, 1), pos_hint={"x": 0, "y": 0})
        outer = BoxLayout(orientation="vertical", padding=mm_px(4), spacing=mm_px(3), size_hint=(1, 1),
                          pos_hint={"x": 0, "y": 0})
        self.header = Row(size_hint_y=None, height=max(mm_px(MIN_TARGET_MM) + 8, 90), spacing=mm_px(3))
        self.title = RTLLabel(font_size=38, bold=True, color=INK, lang=self.lang).show("maint.title")
        self.lang_button = TouchButton(font_size=30, size_hint_x=None, width=max(mm_px(30), 180), lang=self.lang,
                                       choice_id="m:lang")
        self.lang_button.show("ui.lang_toggle")
        self.lang_button.bind(on_release=lambda *_: self._toggle_language())
        self.header.add_widget(self.title)
        self.header.add_widget(self.lang_button)
        self.body = BoxLayout(orientation="vertical", spacing=mm_px(2))
        self.footer = Row(size_hint_y=None, height=max(mm_px(MIN_TARGET_MM) + 8, 100), spacing=mm_px(4))
        for w in (self.header, self.body, self.footer):
            outer.add_widget(w)
        self.overlay.add_widget(outer)
        self.ui.root.add_widget(self.overlay)
        self._start_idle()

    def _label(self, key: str, *, size: int = 30, color: tuple[float, ...] = INK, bold: bool = False,
               **params: Any) -> RTLLabel:
        return RTLLabel(font_size=size, bold=bold, color=color, lang=self.lang, size_hint_y=None, fit_height=True,
                        height=size * 2).show(key, **_params(params))

    def _button(self, choice_id: str, key: str, on_press: Callable[[], None], *, size: int = 30,
                background: tuple[float, ...] | None = None, **params: Any) -> TouchButton:
        btn = TouchButton(font_size=size, lang=self.lang, choice_id=f"m:{choice_id}", size_hint_y=None,
                          height=max(mm_px(MIN_TARGET_MM), 110), size_hint_min_x=mm_px(MIN_TARGET_MM))
        if background is not None:
            btn.background = background
        btn.show(key, **params)
        btn.bind(on_release=lambda *_: on_press())
        return btn

    def _clear(self, screen: str) -> asyncio.Future[str]:
        self.body.clear_widgets()
        self.footer.clear_widgets()
        self.footer.rtl = False
        self.screen = screen
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answer = fut
        return fut

    def _answer_with(self, value: str) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(value)

    def _shown(self) -> None:
        self.footer.rtl = False
        self.footer.set_rtl(self.lang == "fa")
        self.header.set_rtl(self.lang == "fa")
        for listener in list(self.ui.listeners):
            listener(f"maintenance.{self.screen}")

    def _toggle_language(self) -> None:
        self.lang = "en" if self.lang == "fa" else "fa"
        assert self.overlay is not None
        for w in self.overlay.walk(restrict=True):
            if isinstance(w, RTLLabel):
                w.relabel(self.lang)
            if isinstance(w, Row):
                w.set_rtl(self.lang == "fa")
        self.lang_button.show("ui.lang_toggle", self.lang)
        if self.screen == "pin":
            self._update_pin()

    # --- idle --------------------------------------------------------------------------------
    def _touched(self) -> None:
        if self._idle_ev is not None:
            self._start_idle()

    def _start_idle(self) -> None:
        self._stop_idle()
        self._idle_ev = Clock.schedule_once(lambda _dt: self._idle(), self.idle_s)

    def _stop_idle(self) -> None:
        if self._idle_ev is not None:
            self._idle_ev.cancel()
            self._idle_ev = None

    def _idle(self) -> None:
        self._idle_ev = None
        log.info("maintenance: left idle")
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # --- the PIN -----------------------------------------------------------------------------
    async def _pin(self) -> MaintenanceSession | None:
        """Our own keypad, the digits shown as dots. The session, or None (cancelled)."""
        message: tuple[str, dict[str, Any]] | None = None
        status = self.gate.lock_status()
        if status.locked:
            message = ("maint.locked", {"seconds": int(status.locked_for_s + 0.999)})
        elif not stored_pin_hash(self.gate.data_dir, getattr(self.ctx, "settings", None)):
            message = (NoPinSet.key, {})  # said before anything is typed
        while True:
            fut = self._clear("pin")
            self._digits = ""
            self.body.add_widget(self._label("maint.enter_pin", size=36, bold=True))
            self.message = self._label(message[0] if message else "maint.none", size=28, color=BAD,
                                       **(message[1] if message else {}))
            self.message.opacity = 1 if message else 0
            self.body.add_widget(self.message)
            self.dots = RTLLabel(font_size=72, bold=True, halign="center", color=INK, size_hint_y=None, height=100,
                                 lang=self.lang)
            self.body.add_widget(self.dots)
            key_size = max(mm_px(MIN_TARGET_MM) * 1.25, 130)
            pad = GridLayout(cols=3, spacing=mm_px(2.5), size_hint=(None, None), width=3 * key_size + 2 * mm_px(2.5),
                             height=4 * key_size + 3 * mm_px(2.5))
            self.keys: dict[str, TouchButton] = {}
            for k in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "delete"):
                if k.isdigit():
                    btn = TouchButton(font_size=52, bold=True, choice_id=f"m:{k}", size_hint=(None, None),
                                      size=(key_size, key_size), lang=self.lang)
                    btn.bind(on_release=lambda _b, d=k: self._press_digit(d))
                else:
                    btn = TouchButton(font_size=30, choice_id=f"m:{k}", size_hint=(None, None),
                                      size=(key_size, key_size), lang=self.lang, background=CANCEL_BG)
                    btn.show(f"ui.{k}")
                    btn.bind(on_release=lambda _b, op=k: self._press_edit(op))
                self.keys[k] = btn
                pad.add_widget(btn)
            row = BoxLayout(size_hint_y=None, height=pad.height)
            row.add_widget(Widget())
            row.add_widget(pad)
            row.add_widget(Widget())
            self.body.add_widget(row)
            self.body.add_widget(Widget())
            self.ok = self._button("ok", "ui.confirm", lambda: self._answer_with("ok"), background=GOOD)
            self.footer.add_widget(self.ok)
            self.footer.add_widget(self._button("cancel", "ui.cancel", lambda: self._answer_with("cancel"),
                                                background=CANCEL_BG))
            self._update_pin()
            self._shown()
            answer = await fut
            pin, self._digits = self._digits, ""
            self._update_pin()
            if answer != "ok":
                return None
            try:
                return self.gate.open_session(pin, status=self.ui.status)
            except TransactionOpen as exc:  # a transaction began meanwhile (cannot from attract; still)
                await self._page("maint.title", [(exc.key, dict(exc.context), BAD)], [("back", "maint.back")],
                                 screen="refused")
                return None
            except MaintenanceError as exc:
                message = (exc.key, dict(exc.context))
            finally:
                pin = ""

    def _press_digit(self, d: str) -> None:
        if len(self._digits) < PIN_MAX:
            self._digits += d
        self._update_pin()

    def _press_edit(self, op: str) -> None:
        self._digits = "" if op == "clear" else self._digits[:-1]
        self._update_pin()

    def _update_pin(self) -> None:
        if self.screen != "pin":
            return
        self.dots.text = " ".join(DOT * len(self._digits))
        for k, btn in self.keys.items():
            if k.isdigit():
                btn.text = to_persian_digits(k) if self.lang == "fa" else k
                btn.disabled = len(self._digits) >= PIN_MAX
        self.ok.disabled = len(self._digits) < PIN_MIN

    # --- pages -------------------------------------------------------------------------------
    async def _page(self, title_key: str, rows: Sequence[tuple[str, dict[str, Any], tuple[float, ...]]],
                    buttons: Sequence[tuple[str, str]], *, screen: str = "page",
                    extra: Callable[[GridLayout], None] | None = None) -> str:
        """A heading, lines of text (scrolling when long) and footer buttons; the id pressed."""
        fut = self._clear(screen)
        self.body.add_widget(self._label(title_key, size=34, bold=True))
        grid = GridLayout(cols=1, spacing=mm_px(2), size_hint_y=None)
        grid.bind(minimum_height=grid.setter("height"))
        for key, params, color in rows:
            grid.add_widget(self._label(key, size=26, color=color, **params))
        if extra is not None:
            extra(grid)
        scroll = ScrollView(do_scroll_x=False)
        scroll.add_widget(grid)
        self.body.add_widget(scroll)
        for choice, key in buttons:
            self.footer.add_widget(self._button(choice, key, lambda c=choice: self._answer_with(c),
                                                background=CANCEL_BG if choice == "back" else None))
        self._shown()
        return await fut

    async def _wait_page(self, key: str, work: Any, *, cancellable: bool = False) -> Any:
        """`key` shown (with Back when the wait may be given up) while `work` runs; its
        result, or None when given up."""
        task = asyncio.ensure_future(work)
        page = asyncio.ensure_future(self._page("maint.title", [(key, {}, INK)],
                                                [("back", "maint.back")] if cancellable else [], screen="wait"))
        try:
            done, _ = await asyncio.wait({task, page}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        finally:
            page.cancel()
            task.cancel()

    async def _result(self, result: Any) -> None:
        if result is None:
            return
        await self._page("maint.title", [(result.key, dict(result.params), GOOD if result.ok else BAD)],
                         [("back", "maint.back")], screen="result")

    # --- the menu ----------------------------------------------------------------------------
    async def _menu(self) -> None:
        session = self.session
        assert session is not None
        while True:
            fut = self._clear("menu")
            self.body.add_widget(self._label("maint.menu", size=34, bold=True))
            grid = GridLayout(cols=2, spacing=mm_px(2.5), size_hint_y=1)
            for choice, key in MENU:
                btn = self._button(choice, key, lambda c=choice: self._answer_with(c), size=28)
                btn.size_hint_y = 1
                grid.add_widget(btn)
            self.body.add_widget(grid)
            self.footer.add_widget(self._button("exit", "maint.exit", lambda: self._answer_with("exit"),
                                                background=CANCEL_BG))
            self._shown()
            choice = await fut
            if choice == "exit":
                return
            await self._do(session, choice)

    async def _do(self, session: MaintenanceSession, choice: str) -> None:
        if choice == "devices":
            rows: list[tuple[str, dict[str, Any], tuple[float, ...]]] = []
            for d in session.devices():
                rows.append(("maint.device_row", {"name": d["name"], "device": f"device.{d['class']}",
                                                  "state": d["state"]}, INK))
                rows.append(("maint.device_detail", {"consumables": _pairs(d["consumables"]),
                                                     "counters": _pairs(d["counters"]),
                                                     "error": d["last_error"]}, MUTED))
            await self._page("maint.devices", rows, [("back", "maint.back")])
        elif choice == "test_print":
            await self._result(await self._wait_page("maint.working", session.test_print()))
        elif choice == "scan_test":
            await self._result(await self._wait_page("maint.scan_wait", session.scan_test(self.test_wait_s),
                                                     cancellable=True))
        elif choice == "card_read":
            await self._result(await self._wait_page("maint.card_wait", session.card_read(self.test_wait_s),
                                                     cancellable=True))
        elif choice == "paper":
            await self._result(await self._wait_page("maint.working", session.paper_refilled()))
        elif choice == "totals":
            # the journal is read off the event loop: a year of transactions takes seconds
            t = await self._wait_page("maint.working", asyncio.to_thread(session.totals))
            if t is None:
                return
            rows = [("maint.totals_head", {"day": t.day, "count": t.count, "sum_rials": t.sum_rials}, INK),
                    ("maint.by_kind", {}, MUTED)]
            rows += [("maint.totals_row", {"name": k, "count": c, "sum_rials": s}, INK)
                     for k, (c, s) in t.by_kind.items()]
            rows.append(("maint.by_state", {}, MUTED))
            rows += [("maint.totals_row", {"name": k, "count": c, "sum_rials": s}, INK)
                     for k, (c, s) in t.by_state.items()]
            await self._page("maint.totals", rows, [("back", "maint.back")])
        elif choice == "report":
            await self._result(await self._wait_page("maint.working", session.print_day_report()))
        elif choice == "services":
            await self._services(session)
        elif choice == "pending":
            rows = []
            pending = await self._wait_page("maint.working", asyncio.to_thread(session.needs_operator))
            for p in pending or []:
                params = {"tx": p["tx_id"], "kind": p["kind"], "amount_rials": p["amount_rials"], "state": p["state"]}
                rows.append(("maint.pending_row", params, BAD if p["state"] == "REFUND_PENDING" else INK))
                if p["details"]:
                    rows.append(("maint.pending_detail", {"details": _pairs(p["details"])}, MUTED))
            await self._page("maint.needs_operator", rows or [("maint.none", {}, MUTED)], [("back", "maint.back")])

    async def _services(self, session: MaintenanceSession) -> None:
        titles = {s.id: s.title_key for s in SERVICES}
        while True:
            def rows(grid: GridLayout) -> None:
                for s in session.services():
                    line = Row(size_hint_y=None, height=max(mm_px(MIN_TARGET_MM), 110), spacing=mm_px(3))
                    line.add_widget(RTLLabel(font_size=26, lang=self.lang, color=INK).show(
                        titles.get(s["service"], "maint.services")))
                    line.add_widget(RTLLabel(font_size=24, lang=self.lang, color=BAD if s["disabled"] else GOOD,
                                             size_hint_x=0.6).show(
                        "maint.service_out" if s["disabled"] else "maint.service_in"))
                    service = s["service"]
                    btn = self._button(f"svc:{service}", "maint.put_back" if s["disabled"] else "maint.take_out",
                                       lambda x=service: self._answer_with(f"svc:{x}"), size=26)
                    btn.size_hint_x = 0.6
                    line.add_widget(btn)
                    line.set_rtl(self.lang == "fa")
                    grid.add_widget(line)

            choice = await self._page("maint.services", [], [("back", "maint.back")], extra=rows)
            if not choice.startswith("svc:"):
                return
            service = choice[4:]
            out = {s["service"]: s["disabled"] for s in session.services()}
            session.set_service(service, in_service=out.get(service, False))


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) if values else "-"


def _params(values: dict[str, Any]) -> dict[str, Any]:
    """A count as text, so kiosk.messages_ui.render shows it in the language's digits."""
    return {k: str(v) if isinstance(v, int) and not isinstance(v, bool) and not k.endswith("_rials") else v
            for k, v in values.items()}


def attach(ui: KivyUI, ctx: Any, **options: Any) -> MaintenanceScreens:
    """Give the citizen UI its hidden maintenance entry (once; later calls return the same)."""
    existing = getattr(ui, "maintenance", None)
    if isinstance(existing, MaintenanceScreens):
        return existing
    screens = MaintenanceScreens(ui, ctx, **options)
    ui.maintenance = screens  # type: ignore[attr-defined]
    ui.listeners.append(screens.on_screen)
    if ui.screen:
        screens.on_screen(ui.screen)
    return screens


__all__ = ["HiddenCorner", "MaintenanceScreens", "attach"]
