"""The Kivy touch UI: `KivyUI` implements the UI port (kiosk.ui_port) on a touchscreen, portrait or
landscape (from the window: wider than tall is landscape, laid out again when it turns),
and runs citizen sessions — attract, home, one flow, its outcome, back to attract — on the
same asyncio loop as Kivy (`App.async_run(async_lib="asyncio")`), so the flows and the devices
run exactly as they do under the scripted UI.

Screens (`KivyUI.screen` names the one shown): attract (touch to start, rotating hints, an
out-of-service banner), home (service tiles; an unavailable one is greyed with the reason from
the status coordinator), step, choose, digits (our own keypad, keys at least 15 mm),
confirm, error, outcome (what happened to the money, tracking and transaction numbers, the
receipt's QR on the screen when it was not printed). A fee slip the citizen touches in the
list, and each slip about to be paid, gets a details card (label/value rows). The language
button (Persian first) re-renders every label in place. No free-text entry anywhere.

Landscape: the home tiles in five columns (the accessibility toggles beside Cancel), choice
grids twice as wide, the keypad beside its prompt, a QR beside its text, a slip's card beside
the list; every target stays at least 15 mm and inside the window.

Inactivity: after `idle_s` without a touch on a screen that waits for the citizen, a warning
counts down `warn_s` seconds (one tap continues); then the flow is unwound (CitizenLeft), what
was typed is wiped and the kiosk goes back to attract.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.image import Image as CoreImage
from kivy.core.window import Window
from kivy.graphics import Color, Line, Rectangle
from kivy.metrics import Metrics
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.image import Image
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.fee_types import FEE_TYPES, mask_identifier
from kiosk.fmt import to_persian_digits
from kiosk.messages_ui import plain, render
from kiosk.speech import Speaker
from kiosk.status import StatusCoordinator
from kiosk.text.bidi import ltr
from kiosk.ui_port import Choice, CitizenLeft, Outcome, UIPort
from screens.rtl import RTLLabel, TouchButton

log = logging.getLogger("kiosk.ui")

#: the smallest touch target, in millimetres on the glass (ISO 9241-9 / kiosk guidance)
MIN_TARGET_MM = 15.0

WHITE = (1, 1, 1, 1)
INK = (0.10, 0.11, 0.13, 1)
MUTED = (0.38, 0.40, 0.44, 1)
BAD = (0.70, 0.12, 0.10, 1)
GOOD = (0.05, 0.45, 0.22, 1)
CANCEL_BG = (0.55, 0.56, 0.60, 1)
BANNER_BG = (0.70, 0.12, 0.10, 1)
NOTICE_BG = (0.62, 0.40, 0.02, 1)
ROW_BG = (0.93, 0.94, 0.96, 1)
ROW_CHECKED_BG = (0.80, 0.89, 0.98, 1)

#: large-text mode: every label's font this many times its size
LARGE_TEXT = 1.3
#: high-contrast mode: black ground, white text, yellow buttons with black captions
HC_GROUND = (0, 0, 0, 1)
HC_TEXT = {INK: WHITE, MUTED: (0.88, 0.88, 0.88, 1), BAD: (1, 0.62, 0.55, 1), GOOD: (0.55, 1, 0.62, 1)}
HC_BUTTON = (1, 0.84, 0.0, 1)
HC_BUTTON_PRESSED = (0.80, 0.64, 0.0, 1)
HC_CANCEL = (1, 1, 1, 1)
HC_DISABLED = (0.55, 0.55, 0.55, 1)
HC_ROW_BG = (0.12, 0.12, 0.12, 1)
HC_ROW_CHECKED_BG = (0.30, 0.26, 0.0, 1)
BUTTON_BG = (0.13, 0.42, 0.62, 1)
BUTTON_PRESSED = (0.08, 0.28, 0.42, 1)
BUTTON_DISABLED = (0.72, 0.72, 0.74, 1)

#: a choice screen with more options than this lays them out as a grid
GRID_FROM = 4
#: landscape: a choice grid's columns for portrait's (a column of buttons becomes two, …)
LANDSCAPE_COLUMNS = {1: 2, 2: 4, 4: 8}
#: landscape: the home tiles' columns (large text: fewer, for its longer lines)
HOME_COLUMNS_LANDSCAPE, HOME_COLUMNS_LANDSCAPE_LARGE = 5, 3
#: the rows of a fee slip's details card: (label key, value key), values from the slip's params
SLIP_ROWS = (("ui.slip.fee_type", "ui.value.fee_type"), ("ui.slip.identifier", "ui.value.identifier"),
             ("ui.slip.period", "ui.value.period"), ("ui.slip.amount", "ui.value.amount"),
             ("ui.slip.due", "ui.value.due"), ("ui.slip.status", "ui.value.status"))


def mm_px(mm: float) -> float:
    """Millimetres on the glass in pixels at the configured dpi (KIVY_DPI)."""
    return mm * Metrics.dpi / 25.4


@dataclass(frozen=True)
class Service:
    id: str
    title_key: str
    flow: str  # "module:Class", imported when the citizen picks it


SERVICES: tuple[Service, ...] = (
    Service("fee_payment", "fee.title", "kiosk.flows.fee_payment:FeePaymentFlow"),
    Service("card_topup", "topup.title", "kiosk.flows.card_topup:CardTopupFlow"),
    Service("card_balance", "ui.balance.title", "kiosk.flows.card_balance:CardBalanceFlow"),
    Service("qr_ticket", "ticket.title", "kiosk.flows.qr_ticket:QrTicketFlow"),
    Service("card_sale", "card_sale.title", "kiosk.flows.card_sale:CardSaleFlow"),
    Service("collect_pending", "collect.title", "kiosk.flows.collect_pending:CollectPendingFlow"),
    Service("fee_slips", "slips.title", "kiosk.flows.fee_slips:FeeSlipsFlow"),
    Service("certificate", "cert.title", "kiosk.flows.certificate:CertificateFlow"),
    Service("traffic_permit", "permit.title", "kiosk.flows.traffic_permit:TrafficPermitFlow"),
)

HINTS = ("ui.hint.fee", "ui.hint.topup", "ui.hint.balance", "ui.hint.ticket")


class Filled(Widget):
    """A widget with a flat background colour."""

    def __init__(self, rgba: tuple[float, ...] = WHITE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        with self.canvas.before:
            self._c = Color(*rgba)
            self._r = Rectangle(pos=self.pos, size=self.size)
        self.fbind("pos", self._sync)
        self.fbind("size", self._sync)

    def _sync(self, *_: Any) -> None:
        self._r.pos, self._r.size = self.pos, self.size


class KioskRoot(FloatLayout):
    """The window's root: white, and every touch anywhere counts as activity."""

    def __init__(self, on_activity: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_activity = on_activity
        with self.canvas.before:
            self.ground = Color(*WHITE)
            self._bg = Rectangle(pos=self.pos, size=self.size)
        self.fbind("size", lambda *_: setattr(self._bg, "size", self.size))

    def on_touch_down(self, touch: Any) -> bool:
        if self._on_activity():
            return True  # the tap that dismissed the inactivity warning presses nothing beneath it
        return bool(super().on_touch_down(touch))


class Row(BoxLayout):
    """A horizontal row that mirrors for a right-to-left language (first child on the right)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("orientation", "horizontal")
        super().__init__(**kwargs)
        self.rtl = False

    def set_rtl(self, rtl: bool) -> None:
        if rtl != self.rtl:
            self.rtl = rtl
            kids = list(self.children)
            self.clear_widgets()
            for w in kids:  # self.children is last-added first: re-adding reverses the order
                self.add_widget(w)


class Grid(GridLayout):
    """A grid whose cells run right to left in a right-to-left language (the first top right)."""

    def set_rtl(self, rtl: bool) -> None:
        self.orientation = "rl-tb" if rtl else "lr-tb"


class Split(BoxLayout):
    """Two parts of a screen: one above the other in portrait; side by side in landscape, the
    first on the reading side (on the right in Persian)."""

    def __init__(self, first: Widget, second: Widget, *, landscape: bool, **kwargs: Any) -> None:
        kwargs.setdefault("spacing", mm_px(4))
        super().__init__(orientation="horizontal" if landscape else "vertical", **kwargs)
        self.parts = (first, second)
        self.rtl = False
        self._arrange()

    def set_rtl(self, rtl: bool) -> None:
        if rtl != self.rtl:
            self.rtl = rtl
            self._arrange()

    def _arrange(self) -> None:
        self.clear_widgets()
        side_by_side = self.orientation == "horizontal"
        for w in (self.parts[::-1] if side_by_side and self.rtl else self.parts):
            self.add_widget(w)


class Card(BoxLayout):
    """A fee slip's details: a title and label/value rows (Row, so they mirror in Persian) on a
    tinted ground; as tall as its rows."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(orientation="vertical", size_hint_y=None, padding=mm_px(3), spacing=mm_px(1.5), **kwargs)
        self.contrast = False
        self.slip_params: dict[str, Any] = {}
        with self.canvas.before:
            self._bg_color = Color(*ROW_BG)
            self._bg = Rectangle()
        self.bind(minimum_height=self.setter("height"))
        self.fbind("pos", self._paint)
        self.fbind("size", self._paint)

    def _paint(self, *_: Any) -> None:
        self._bg_color.rgba = HC_ROW_BG if self.contrast else ROW_BG
        self._bg.pos, self._bg.size = self.pos, self.size


class CheckRow(ButtonBehavior, Row):
    """One row of a multiple choice: a check box and the option's label; a tap checks or
    unchecks it. At least a 15 mm target, taller when its label wraps."""

    def __init__(self, label: RTLLabel, choice_id: str, **kwargs: Any) -> None:
        super().__init__(size_hint_y=None, padding=(mm_px(3), 8), spacing=mm_px(3), **kwargs)
        self.choice_id = choice_id
        self.checked = False
        self.contrast = False
        self.label = label
        self.box = Widget(size_hint_x=None, width=mm_px(9))
        with self.canvas.before:
            self._bg_color = Color(*ROW_BG)
            self._bg = Rectangle()
        with self.box.canvas:
            self._ink = Color(*INK)
            self._frame = Line(width=2.5)
            self._tick = Line(width=4)
        self.add_widget(self.box)
        self.add_widget(label)
        label.fbind("height", self._fit)
        self.fbind("pos", self._paint)
        self.fbind("size", self._paint)
        self.box.fbind("pos", self._paint)
        self._fit()

    def _fit(self, *_: Any) -> None:
        self.height = max(mm_px(MIN_TARGET_MM), self.label.height + 16)

    def set_checked(self, checked: bool) -> None:
        self.checked = checked
        self._paint()

    def _paint(self, *_: Any) -> None:
        if self.contrast:
            self._bg_color.rgba = HC_ROW_CHECKED_BG if self.checked else HC_ROW_BG
            self._ink.rgba = WHITE
        else:
            self._bg_color.rgba = ROW_CHECKED_BG if self.checked else ROW_BG
            self._ink.rgba = INK
        self._bg.pos, self._bg.size = self.pos, self.size
        side = mm_px(8)
        x, y = self.box.x, self.center_y - side / 2
        self._frame.rectangle = (x, y, side, side)
        self._tick.points = [x + side * 0.2, y + side * 0.5, x + side * 0.42, y + side * 0.22,
                             x + side * 0.82, y + side * 0.8] if self.checked else []


class KivyUI(UIPort):
    def __init__(self, *, lang: str = "fa", status: StatusCoordinator | None = None,
                 idle_s: float = 45.0, warn_s: float = 20.0, error_s: float = 12.0,
                 outcome_s: float = 25.0, hint_s: float = 4.0, hold_steps: bool = False,
                 speaker: Speaker | None = None) -> None:
        self.default_lang = lang
        self.lang = lang
        self.status = status or StatusCoordinator()
        self.idle_s, self.warn_s, self.error_s, self.outcome_s, self.hint_s = idle_s, warn_s, error_s, outcome_s, hint_s
        #: tour mode: a step screen stays until `release_step()` (a screenshot can be taken)
        self.hold_steps = hold_steps
        self._step_gate: asyncio.Future[None] | None = None
        self.screen = ""
        self.screen_key = ""
        self.root: KioskRoot | None = None
        self.started: asyncio.Future[None] | None = None
        self._answer: asyncio.Future[Any] | None = None
        self._cancel_waiters: list[asyncio.Future[None]] = []
        self._abandoned = False
        self._receipt_not_printed = False
        self._digits = ""
        self._idle_ev: Any = None
        self._warn_ev: Any = None
        self._warn_left = 0
        self._hint_ev: Any = None
        self._hint_i = 0
        self.overlay: Widget | None = None
        self.last_outcome: Outcome | None = None
        self.listeners: list[Callable[[str], None]] = []  # told the name of each screen shown
        # accessibility, chosen on the attract or home screen; every session starts without
        self.large_text = False
        self.high_contrast = False
        #: audio guidance through espeak-ng (kiosk.speech); offered only when it is installed
        self.speaker = speaker if speaker is not None else Speaker()
        self.speech_on = False
        self._toggles: dict[str, TouchButton] = {}
        #: the window is wider than tall (set from the window in build, and when it is resized)
        self.landscape = False
        #: builds the screen now shown again (the window turned): each screen sets it
        self._relayout: Callable[[], None] | None = None
        #: the slips' details: the identifier looked up, masked as it is typed (nothing else of
        #: it kept), the slips chosen (their params), the slip whose card is shown
        self._identifier_masked = ""
        self._plate_parts: dict[str, str] = {}
        self._chosen_slips: list[dict[str, Any]] = []
        self._detail: dict[str, Any] | None = None

    # --- building ----------------------------------------------------------------------------
    def build(self) -> KioskRoot:
        self.root = KioskRoot(self._activity)
        self.landscape = Window.width > Window.height
        outer = self.outer = BoxLayout(orientation="vertical")
        self._frame()
        self.header = Row(size_hint_y=None, height=max(mm_px(MIN_TARGET_MM) + 8, 90), spacing=mm_px(3))
        self.title = RTLLabel(font_size=40, bold=True, color=INK)
        self.lang_button = TouchButton(font_size=30, size_hint_x=None, width=max(mm_px(30), 180))
        self.lang_button.bind(on_release=lambda *_: self.toggle_language())
        self.header.add_widget(self.title)
        self.header.add_widget(self.lang_button)
        self.banner = RTLLabel(font_size=28, color=WHITE, size_hint_y=None, height=0, halign="center")
        with self.banner.canvas.before:
            self._banner_color = Color(*BANNER_BG)
            self._banner_rect = Rectangle()
        self.banner.fbind("pos", lambda *_: setattr(self._banner_rect, "pos", self.banner.pos))
        self.banner.fbind("size", lambda *_: setattr(self._banner_rect, "size", self.banner.size))
        self.body = BoxLayout(orientation="vertical", spacing=mm_px(3))
        self.footer = Row(size_hint_y=None, height=max(mm_px(MIN_TARGET_MM) + 8, 100), spacing=mm_px(4))
        for w in (self.header, self.banner, self.body, self.footer):
            outer.add_widget(w)
        self.root.add_widget(outer)
        # a device may publish from a driver's worker thread: widgets change on Kivy's thread only
        self.status.add_listener(lambda co: Clock.schedule_once(lambda _dt: self._status_changed(co), 0))
        Window.bind(size=self._window_resized)
        self._apply_lang()
        return self.root

    # --- orientation -------------------------------------------------------------------------
    def _frame(self) -> None:
        """The margins: landscape has less height to spare, so thinner ones."""
        self.outer.padding = mm_px(2.5) if self.landscape else mm_px(4)
        self.outer.spacing = mm_px(2) if self.landscape else mm_px(3)

    def _window_resized(self, *_: Any) -> None:
        landscape = Window.width > Window.height
        if landscape == self.landscape:
            return
        self.landscape = landscape
        log.info("the window turned %s: %sx%s", "landscape" if landscape else "portrait", *Window.size)
        self._frame()
        if self._relayout is not None and self.screen:
            self._relayout()
            if self._answer is not None and not self._answer.done() and self.screen != "attract":
                self._start_idle()

    def _layout(self, build: Callable[[], None]) -> None:
        """Build the screen now, and again (the same answer awaited) if the window turns."""
        self._relayout = build
        build()

    def body_room(self) -> float:
        """The body's height in pixels, from the window (before Kivy has laid it out)."""
        pad, gap = self.outer.padding[1] * 2, self.outer.spacing * 3
        return float(Window.height - pad - gap - self.header.height - self.banner.height - self.footer.height)

    def _label(self, key: str, *, size: int = 34, bold: bool = False, color: tuple[float, ...] = INK,
               fit: bool = True, halign: str = "auto", **params: Any) -> RTLLabel:
        lab = RTLLabel(font_size=size, bold=bold, color=color, halign=halign, lang=self.lang,
                       size_hint_y=None if fit else 1, fit_height=fit, height=size * 2)
        self._style(lab)
        return lab.show(key, **params)

    def _button(self, key: str, on_press: Callable[[], None], *, choice_id: str = "", size: int = 34,
                background: tuple[float, ...] | None = None, **params: Any) -> TouchButton:
        btn = TouchButton(font_size=size, lang=self.lang, choice_id=choice_id, size_hint_y=None,
                          height=max(mm_px(MIN_TARGET_MM), 110), size_hint_min_x=mm_px(MIN_TARGET_MM))
        if background is not None:
            btn.background = background
        self._style(btn)
        btn.show(key, **params)
        btn.bind(on_release=lambda *_: on_press())
        return btn

    def _clear(self, screen: str, key: str = "") -> None:
        self.body.clear_widgets()
        self.footer.clear_widgets()
        self.footer.rtl = False
        self._stop_hints()
        self._stop_idle()
        self.screen, self.screen_key = screen, key
        self._toggles = {}
        self.title.show("ui.kiosk_name", self.lang)
        self._show_banner()

    def _shown(self) -> None:
        self.footer.rtl = False
        self.footer.set_rtl(self.lang == "fa")
        for w in (*self.body.walk(restrict=True), *self.footer.walk(restrict=True)):
            if isinstance(w, (Row, Grid, Split)) and w is not self.footer:
                w.set_rtl(self.lang == "fa")
        self._apply_access()
        self._speak()
        for listener in list(self.listeners):
            listener(self.screen)

    # --- accessibility -----------------------------------------------------------------------
    def _style(self, w: RTLLabel) -> None:
        """A label or button in the modes now on: its font scaled for large text, its colours
        swapped for high contrast; from the size and colours it was made with (kept on it)."""
        base = getattr(w, "base_style", None)
        if base is None:
            bg = tuple(w.background) if isinstance(w, TouchButton) else None
            base = w.base_style = (w.font_size, tuple(w.color), bg)
        size, color, bg = base
        fixed = getattr(w, "fixed_size", False)  # the toggles themselves keep their size
        w.font_size = round(size * (LARGE_TEXT if self.large_text and not fixed else 1.0))
        if isinstance(w, TouchButton):
            if self.high_contrast:
                w.color = INK
                w.background = HC_CANCEL if bg == CANCEL_BG else HC_BUTTON
                w.pressed_background, w.disabled_background = HC_BUTTON_PRESSED, HC_DISABLED
            else:
                w.color = color
                w.background = bg
                w.pressed_background, w.disabled_background = BUTTON_PRESSED, BUTTON_DISABLED
        elif w is not self.banner:
            w.color = HC_TEXT.get(color, color) if self.high_contrast else color

    def _apply_access(self) -> None:
        """Every label on the screen in the modes now on (the same widgets, drawn again)."""
        if self.root is None:
            return
        self.root.ground.rgba = HC_GROUND if self.high_contrast else WHITE
        for w in self.root.walk(restrict=False):
            if isinstance(w, RTLLabel):
                self._style(w)
            elif isinstance(w, (CheckRow, Card)):
                w.contrast = self.high_contrast
                w._paint()
        for key, btn in getattr(self, "_toggles", {}).items():
            on = {"large_text": self.large_text, "high_contrast": self.high_contrast,
                  "speech": self.speech_on}[key]
            btn.show("ui.toggle_on" if on else "ui.toggle_off", name_key=f"ui.{key}")

    def toggle_access(self, mode: str) -> None:
        """Large text, high contrast or audio guidance on or off, re-rendered at once."""
        if mode == "large_text":
            self.large_text = not self.large_text
        elif mode == "high_contrast":
            self.high_contrast = not self.high_contrast
        elif mode == "speech":
            self.speech_on = not self.speech_on
            if not self.speech_on:
                self.speaker.stop()
        if mode == "large_text" and self.screen == "home" and self._answer is not None \
                and not self._answer.done():
            self._build_home(self._answer)  # fewer columns for large text
            self._start_idle()
        self._apply_access()
        self._activity()
        self._speak()

    def _access_buttons(self) -> Row:
        """The accessibility toggles, a row at the foot of the attract and home screens."""
        self._toggles = {}
        row = Row(size_hint_y=None, height=max(mm_px(MIN_TARGET_MM), 84), spacing=mm_px(3))
        modes = ["large_text", "high_contrast"] + (["speech"] if self.speaker.available else [])
        for mode in modes:
            btn = TouchButton(font_size=24, lang=self.lang, choice_id=mode, size_hint_y=None, height=row.height,
                              background=MUTED)
            btn.fixed_size = True
            btn.bind(on_release=lambda _b, m=mode: self.toggle_access(m))
            self._style(btn)
            btn.show("ui.toggle_off", name_key=f"ui.{mode}")
            self._toggles[mode] = btn
            row.add_widget(btn)
        return row

    def _speak(self) -> None:
        """Audio guidance: the screen's words, in the language shown, without waiting."""
        if not self.speech_on or self.root is None:
            return
        words = [plain(w.text) for w in self.body.walk(restrict=True)
                 if isinstance(w, RTLLabel) and w.text and w.opacity > 0 and w.msg_key is not None]
        if self.overlay is not None:
            words = [plain(w.text) for w in self.overlay.walk(restrict=True) if isinstance(w, RTLLabel) and w.text]
        self.speaker.say(" . ".join(words), self.lang)

    def _spacer(self) -> Widget:
        return Widget()

    # --- language ----------------------------------------------------------------------------
    def toggle_language(self) -> None:
        self.lang = "en" if self.lang == "fa" else "fa"
        self._apply_lang()
        self._activity()

    def set_language(self, lang: str) -> None:
        if lang != self.lang:
            self.toggle_language()

    def _apply_lang(self) -> None:
        """Re-render every label from its message key in the new language; mirror the rows."""
        if self.root is None:
            return
        for w in self.root.walk(restrict=False):
            if isinstance(w, RTLLabel):
                w.relabel(self.lang)
            if isinstance(w, (Row, Grid, Split)):
                w.set_rtl(self.lang == "fa")
        self.lang_button.show("ui.lang_toggle", self.lang)
        if self.screen == "digits":
            self._update_digits()
        self._speak()

    # --- status --------------------------------------------------------------------------------
    def _status_changed(self, _coordinator: StatusCoordinator) -> None:
        self._show_banner()
        if self.screen == "home" and self._answer is not None and not self._answer.done():
            self._build_home(self._answer)
            self._start_idle()

    def _printer_down(self) -> bool:
        rows = [d for d in self.status.devices.values() if d.device_class == "ReceiptPrinter"]
        return bool(rows) and rows[0].reason is not None

    def _show_banner(self) -> None:
        """Out of service (red), or on the attract and home screens a notice that receipts
        will be shown on the screen while the printer cannot print (amber); else nothing."""
        reason = self.status.blocker("journal")
        if reason is not None:
            self._banner_color.rgba = BANNER_BG
            self.banner.show(reason.key, self.lang, **dict(reason.params))
        elif self.screen in ("attract", "home") and self._printer_down():
            self._banner_color.rgba = NOTICE_BG
            self.banner.show("ui.no_printer", self.lang)
        else:
            self.banner.height = 0
            self.banner.opacity = 0
            self.banner.text = ""
            self.banner.msg_key = None
            return
        self.banner.opacity = 1
        self.banner.height = 130

    # --- inactivity ----------------------------------------------------------------------------
    def _activity(self) -> bool:
        """A touch: the idle timer starts again. True when it dismissed the warning."""
        warned = self.overlay is not None
        if warned:
            self._dismiss_warning()
        if self._idle_ev is not None:
            self._idle_ev.cancel()
            self._idle_ev = Clock.schedule_once(self._idle, self.idle_s)
        return warned

    def _start_idle(self) -> None:
        self._stop_idle()
        if self._cancel_waiters:
            # a payment waits on the terminal (its Cancel is the citizen's only choice):
            # inactivity must never cancel it; the terminal's own timeout ends the wait
            return
        self._idle_ev = Clock.schedule_once(self._idle, self.idle_s)

    def _stop_idle(self) -> None:
        if self._idle_ev is not None:
            self._idle_ev.cancel()
            self._idle_ev = None
        self._dismiss_warning()

    def _idle(self, *_: Any) -> None:
        self._idle_ev = None
        self._warn_left = int(round(self.warn_s))
        box = FloatLayout()
        shade = Filled((0, 0, 0, 0.55), size_hint=(1, 1), pos_hint={"x": 0, "y": 0})
        card = BoxLayout(orientation="vertical", size_hint=(0.86, None), height=520, padding=mm_px(5),
                         spacing=mm_px(4), pos_hint={"center_x": 0.5, "center_y": 0.5})
        with card.canvas.before:
            Color(*(HC_ROW_BG if self.high_contrast else WHITE))
            rect = Rectangle()
        card.fbind("pos", lambda *_: setattr(rect, "pos", card.pos))
        card.fbind("size", lambda *_: setattr(rect, "size", card.size))
        self._warn_label = self._label("ui.still_there", size=36, seconds=self._warn_left)
        card.add_widget(self._warn_label)
        card.add_widget(self._spacer())
        card.add_widget(self._button("ui.continue", self._activity, choice_id="continue"))
        box.add_widget(shade)
        box.add_widget(card)
        self.overlay = box
        assert self.root is not None
        self.root.add_widget(box)
        self._warn_ev = Clock.schedule_interval(self._tick, 1.0)
        self._apply_access()
        self._speak()
        for listener in list(self.listeners):
            listener("inactivity")

    def _tick(self, *_: Any) -> None:
        self._warn_left -= 1
        if self._warn_left > 0:
            self._warn_label.show("ui.still_there", seconds=self._warn_left)
            return
        self._dismiss_warning()
        self._reset()

    def _dismiss_warning(self) -> None:
        if self._warn_ev is not None:
            self._warn_ev.cancel()
            self._warn_ev = None
        if self.overlay is not None and self.root is not None:
            self.root.remove_widget(self.overlay)
            self.overlay = None
            if self._answer is not None and not self._answer.done():
                self._start_idle()  # one tap extends: the waiting screen gets its full time again

    def _reset(self) -> None:
        """The citizen walked away: unwind the flow and wipe what was typed."""
        log.info("inactivity: session reset")
        self._abandoned = True
        self._digits = ""
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(CitizenLeft("inactivity"))
        # a Cancel waiter is a charge waiting on the terminal: never released here (that would
        # cancel the payment); the idle timer does not run while one waits (_start_idle)

    # --- waiting for the citizen ----------------------------------------------------------------
    def _new_answer(self) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answer = fut
        return fut

    def _answer_with(self, fut: asyncio.Future[Any], value: Any) -> None:
        if not fut.done():
            if isinstance(value, BaseException):
                fut.set_exception(value)
            else:
                fut.set_result(value)

    async def _wait(self, fut: asyncio.Future[Any], timeout: float | None = None, *, idle: bool = True) -> Any:
        if idle:
            self._start_idle()
        try:
            if timeout is None:
                return await fut
            done, _ = await asyncio.wait({fut}, timeout=timeout)
            return fut.result() if done else None
        finally:
            self._stop_idle()
            if self._answer is fut:
                self._answer = None

    def _left(self) -> None:
        if self._abandoned:
            raise CitizenLeft("inactivity")

    # --- the UI port ---------------------------------------------------------------------------
    async def show_step(self, key: str, **params: Any) -> None:
        if self._abandoned:
            return
        self._layout(lambda: self._step_screen(key, params))
        if self.hold_steps:
            self._step_gate = asyncio.get_running_loop().create_future()
            await self._step_gate

    def _step_screen(self, key: str, params: dict[str, Any]) -> None:
        self._clear("step", key)
        payload = params.get("payload")
        label = self._label(key, size=40 if "payload" not in params else 32, halign="center", **params)
        if isinstance(payload, str) and self.landscape:  # something to photograph, beside the words
            self.body.add_widget(self._beside(self._column(label), self._qr(payload)))
        else:
            self.body.add_widget(self._spacer())
            self.body.add_widget(label)
            if isinstance(payload, str):  # something to photograph (a ticket not printed)
                self.body.add_widget(self._qr(payload))
            self.body.add_widget(self._spacer())
        self._cancel_button = self._button("ui.cancel", self._cancel_wait, choice_id="cancel",
                                           background=CANCEL_BG)
        self._show_cancel()
        self.footer.add_widget(self._cancel_button)
        self._shown()

    def _column(self, *widgets: Widget) -> BoxLayout:
        """Labels one under another, in the middle of their part."""
        col = BoxLayout(orientation="vertical", spacing=mm_px(3))
        col.add_widget(self._spacer())
        for w in widgets:
            col.add_widget(w)
        col.add_widget(self._spacer())
        return col

    def _beside(self, text: Widget, qr: Image) -> Split:
        """Landscape: the words and a QR side by side, the words on the reading side, the QR a
        square as tall as the room there is."""
        qr.size_hint = (None, 1)
        qr.width = min(self.body_room(), Window.width / 2)
        return Split(text, qr, landscape=True)

    def release_step(self) -> None:
        if self._step_gate is not None and not self._step_gate.done():
            self._step_gate.set_result(None)

    def _cancel_wait(self) -> None:
        for waiter in self._cancel_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _show_cancel(self) -> None:
        """The step screen's Cancel: shown and live while something waits for it (a charge
        waiting on the terminal), hidden and disabled otherwise (after the terminal answered
        it would do nothing)."""
        btn = getattr(self, "_cancel_button", None)
        if btn is None:
            return
        live = bool(self._cancel_waiters)
        btn.opacity, btn.disabled = (1 if live else 0), not live

    async def wait_cancel(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cancel_waiters.append(fut)
        if self.screen == "step":
            self._stop_idle()  # a charge waiting on the terminal: no inactivity may cancel it
            self._show_cancel()
        try:
            await fut
        finally:
            self._cancel_waiters.remove(fut)
            if self.screen == "step":
                self._show_cancel()

    async def choose(self, key: str, options: list[Choice], **params: Any) -> str:
        """One big button per option: a column, or a grid when there are many (four columns of
        short labels such as the plate's letters, two of longer ones such as the days); in
        landscape twice the columns."""
        self._left()
        fut = self._new_answer()
        self._layout(lambda: self._choose_screen(fut, key, options, params))
        answer = str(await self._wait(fut))
        self._note_identifier(key, answer, options)
        return answer

    def _choose_screen(self, fut: asyncio.Future[Any], key: str, options: list[Choice],
                       params: dict[str, Any]) -> None:
        self._clear("choose", key)
        self.body.add_widget(self._label(key, size=36, **params))
        cols = self.choice_columns(options)
        big = cols == 4  # one or two letters: big and bold
        if self.landscape and len(options) > 1:
            cols = LANDSCAPE_COLUMNS.get(cols, cols)
        grid = Grid(cols=cols, spacing=mm_px(3), size_hint_y=None)
        grid.bind(minimum_height=grid.setter("height"))
        for option in options:
            btn = self._choice_button(option, fut)
            if big:
                btn.font_size, btn.bold = 48, True
                btn.base_style = None
            grid.add_widget(btn)
        self.body.add_widget(grid)
        self.body.add_widget(self._spacer())
        self.footer.add_widget(self._button("ui.cancel", lambda: self._answer_with(fut, CitizenLeft("cancel")),
                                            background=CANCEL_BG, choice_id="cancel"))
        self._shown()

    @staticmethod
    def choice_columns(options: list[Choice]) -> int:
        """1 column for a few options; 4 for many short labels (a letter); else 2 (portrait)."""
        if len(options) <= GRID_FROM:
            return 1
        widest = max(len(plain(render(o.label_key, lang, **dict(o.params)))) for o in options for lang in ("fa", "en"))
        return 4 if widest <= 4 else 2

    async def choose_many(self, key: str, options: list[Choice], *, min_count: int = 1, **params: Any) -> list[str]:
        """A scrolling list of check-box rows (each at least 15 mm) and Done, enabled once
        `min_count` are checked; the ids checked, in the options' order. Fee slips: the last one
        touched has its details card under the list (beside it in landscape)."""
        self._left()
        fut = self._new_answer()
        self._checked: set[str] = set()
        self._min_count = min_count
        self._detail = None
        self._layout(lambda: self._choose_many_screen(fut, key, options, params))
        ids = list(await self._wait(fut))
        if any(o.label_key == "slips.item" for o in options):
            self._chosen_slips = [dict(o.params) for o in options if o.id in ids]
        return ids

    def _choose_many_screen(self, fut: asyncio.Future[Any], key: str, options: list[Choice],
                            params: dict[str, Any]) -> None:
        self._clear("choose_many", key)
        self.body.add_widget(self._label(key, size=34, **params))
        self._chosen_label = self._label("ui.chosen", size=26, color=MUTED, count=len(self._checked))
        rows = GridLayout(cols=1, spacing=mm_px(2), size_hint_y=None)
        rows.bind(minimum_height=rows.setter("height"))
        self.check_rows: dict[str, CheckRow] = {}
        slips = any(o.label_key == "slips.item" for o in options)
        for option in options:
            label = self._label(option.label_key, size=28, **dict(option.params))
            row = CheckRow(label, option.id)
            row.set_checked(option.id in self._checked)
            row.bind(on_release=lambda _r, o=option: self._toggle_check(o.id, o.params if slips else None))
            self.check_rows[option.id] = row
            rows.add_widget(row)
        scroll = ScrollView(do_scroll_x=False, size_hint_y=1, bar_width=mm_px(2))
        scroll.add_widget(rows)
        self.detail_box: BoxLayout | None = None
        if slips:
            self.detail_box = BoxLayout(orientation="vertical", size_hint_y=None)
            self._fill_detail()
            if self.landscape:
                self.detail_box.size_hint_y = 1
                listing = BoxLayout(orientation="vertical", spacing=mm_px(2))
                listing.add_widget(self._chosen_label)
                listing.add_widget(scroll)
                self.body.add_widget(Split(listing, self.detail_box, landscape=True))
            else:
                self.body.add_widget(self._chosen_label)
                self.body.add_widget(scroll)
                self.body.add_widget(self.detail_box)
        else:
            self.body.add_widget(self._chosen_label)
            self.body.add_widget(scroll)
        self._done = self._button("choice.done", lambda: self._answer_with(fut, [o.id for o in options
                                                                                 if o.id in self._checked]),
                                  choice_id="done", background=GOOD)
        self._done.disabled = len(self._checked) < self._min_count
        self.footer.add_widget(self._done)
        self.footer.add_widget(self._button("ui.cancel", lambda: self._answer_with(fut, CitizenLeft("cancel")),
                                            background=CANCEL_BG, choice_id="cancel"))
        self._shown()

    def _toggle_check(self, choice_id: str, slip: dict[str, Any] | None = None) -> None:
        self._checked ^= {choice_id}
        self.check_rows[choice_id].set_checked(choice_id in self._checked)
        self._chosen_label.show("ui.chosen", count=len(self._checked))
        self._done.disabled = len(self._checked) < self._min_count
        if slip is not None:  # the slip touched: its details card
            self._detail = dict(slip)
            self._fill_detail()
            self._shown_again()

    def _fill_detail(self) -> None:
        box = self.detail_box
        if box is None:
            return
        box.clear_widgets()
        if self._detail is None:
            hint = self._label("ui.slip.tap_for_details", size=26, color=MUTED)
            box.add_widget(hint)
            self.slip_card = None
        else:
            self.slip_card = self.slip_card_for(self._detail)
            box.add_widget(self.slip_card)
        if box.size_hint_y is None:  # under the list: as tall as the card
            first = box.children[0]
            box.height = first.height
            first.fbind("height", lambda *_: setattr(box, "height", first.height))
        else:  # beside the list: the card at the top
            box.add_widget(self._spacer())

    def _shown_again(self) -> None:
        """A part of the screen built again in place: mirrored and styled like the rest."""
        for w in self.body.walk(restrict=True):
            if isinstance(w, (Row, Grid, Split)):
                w.set_rtl(self.lang == "fa")
        self._apply_access()
        self._speak()

    def slip_card_for(self, slip: dict[str, Any]) -> Card:
        """A fee slip's details card: fee type, the identifier (masked), period, amount, due
        date and paid or not, one label/value row each, from the slip's own params."""
        values = dict(slip)
        identifier = values.get("identifier") or self._identifier_masked
        values["identifier"] = identifier
        card = Card()
        card.slip_params = values
        card.add_widget(self._label("ui.slip.title", size=28, bold=True))
        for label_key, value_key in SLIP_ROWS:
            if label_key == "ui.slip.identifier" and not identifier:
                continue  # a slip not looked up by an identifier typed here
            row = Row(size_hint_y=None, spacing=mm_px(3))
            name = self._label(label_key, size=24, color=MUTED)
            value = self._label(value_key, size=28, bold=True, **values)
            name.size_hint_x, value.size_hint_x = 0.38, 0.62
            name.value_label = value

            def fit(*_: Any, r: Row = row, a: RTLLabel = name, b: RTLLabel = value) -> None:
                r.height = max(a.height, b.height)

            name.fbind("height", fit)
            value.fbind("height", fit)
            fit()
            row.add_widget(name)
            row.add_widget(value)
            card.add_widget(row)
        return card

    def _note_identifier(self, key: str, answer: str, options: list[Choice] | None = None) -> None:
        """What the details card may show of the identifier the citizen typed for a look-up:
        its mask only (kiosk.fee_types.mask_identifier); a plate without its three-digit serial."""
        if key.startswith("slips.enter_"):
            kind = next((t for t in FEE_TYPES.values() if t.identifier == key[len("slips.enter_"):]), None)
            if kind is not None and answer:
                self._identifier_masked = mask_identifier(kind, answer)
            self._plate_parts = {}
        elif key in ("slips.plate_two", "slips.plate_region"):
            self._plate_parts[key] = answer
        elif key == "slips.plate_letter" and options is not None:
            picked = next((o for o in options if o.id == answer), None)
            if picked is not None:
                self._plate_parts[key] = str(picked.params.get("letter", ""))
        if key == "slips.plate_region" and len(self._plate_parts) == 3:
            parts = (self._plate_parts["slips.plate_two"], self._plate_parts["slips.plate_letter"], "***", "ایران",
                     self._plate_parts["slips.plate_region"])
            self._identifier_masked = ltr(" ".join(ltr(p) for p in parts))  # read left to right, as the plate
            self._plate_parts = {}

    def _choice_button(self, option: Choice, fut: asyncio.Future[Any]) -> TouchButton:
        params = dict(option.params)
        key = option.label_key
        if option.id.isdigit() and key.endswith("preset"):
            # a suggested amount: its id is the amount in rials, which is what the citizen reads
            params.setdefault("amount_rials", int(option.id))
            if "{amount}" not in render(key, "en"):
                key = "ui.amount"
        btn = self._button(key, lambda: self._answer_with(fut, option.id), choice_id=option.id, **params)
        btn.grow = btn.height  # a caption that wraps (large text) makes the button taller, not clipped
        return btn

    async def ask_digits(self, key: str, *, min_len: int, max_len: int) -> str:
        self._left()
        fut = self._new_answer()
        self._digits = ""
        self._min_len, self._max_len = min_len, max_len
        self._layout(lambda: self._digits_screen(fut, key))
        try:
            answer = str(await self._wait(fut))
            self._note_identifier(key, answer)
            return answer
        finally:
            self._digits = ""  # nothing typed outlives its question

    def key_size(self) -> float:
        """A keypad key's side: 1.25 × the 15 mm target (at least 130 px); in landscape as big as
        four rows fit beside the prompt, never under 15 mm."""
        size = max(mm_px(MIN_TARGET_MM) * 1.25, 130)
        if self.landscape:
            size = min(size, (self.body_room() - self.footer_overlap() - 3 * mm_px(2.5)) / 4)
        return max(size, mm_px(MIN_TARGET_MM))

    def footer_overlap(self) -> float:
        """How far the footer's buttons (at least 110 px) reach above the footer into the body
        on a low-dpi panel (a 100 px footer at 102 dpi): a keypad beside its prompt keeps clear."""
        return max(0.0, max(mm_px(MIN_TARGET_MM), 110) - self.footer.height)

    def _digits_screen(self, fut: asyncio.Future[Any], key: str) -> None:
        self._clear("digits", key)
        prompt = self._label(key, size=36)
        hint = self._label("ui.digits_hint", size=26, color=MUTED, min=self._min_len, max=self._max_len)
        self._display = RTLLabel(font_size=56, bold=True, halign="center", color=INK, size_hint_y=None,
                                 height=110, lang=self.lang)
        self.keypad = GridLayout(cols=3, spacing=mm_px(2.5), size_hint=(None, None))
        key_size = self.key_size()
        self.keypad.width = 3 * key_size + 2 * mm_px(2.5)
        self.keypad.height = 4 * key_size + 3 * mm_px(2.5)
        self._keys: dict[str, TouchButton] = {}
        for k in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "delete"):
            if k.isdigit():
                btn = TouchButton(font_size=52, bold=True, choice_id=k, size_hint=(None, None),
                                  size=(key_size, key_size), lang=self.lang)
                btn.text = to_persian_digits(k) if self.lang == "fa" else k
                btn.bind(on_release=lambda _b, d=k: self._press_digit(d))
            else:
                btn = TouchButton(font_size=30, choice_id=k, size_hint=(None, None), size=(key_size, key_size),
                                  lang=self.lang, background=CANCEL_BG)
                btn.show(f"ui.{k}")
                btn.bind(on_release=lambda _b, op=k: self._press_edit(op))
            self._keys[k] = btn
            self.keypad.add_widget(btn)
        if self.landscape:  # the keypad beside the prompt, the prompt on the reading side
            pad = BoxLayout(orientation="vertical", size_hint_x=None, width=self.keypad.width,
                            padding=(0, 0, 0, self.footer_overlap()))
            pad.add_widget(self._spacer())
            pad.add_widget(self.keypad)
            pad.add_widget(self._spacer())
            self.body.add_widget(Split(self._column(prompt, hint, self._display), pad, landscape=True))
        else:
            for w in (prompt, hint, self._display):
                self.body.add_widget(w)
            pad_row = BoxLayout(size_hint_y=None, height=self.keypad.height)
            pad_row.add_widget(Widget())
            pad_row.add_widget(self.keypad)
            pad_row.add_widget(Widget())
            self.body.add_widget(pad_row)
            self.body.add_widget(self._spacer())
        self._ok = self._button("ui.confirm", lambda: self._answer_with(fut, self._digits), choice_id="ok",
                                background=GOOD)
        self.footer.add_widget(self._ok)
        self.footer.add_widget(self._button("ui.cancel", lambda: self._answer_with(fut, CitizenLeft("cancel")),
                                            background=CANCEL_BG, choice_id="cancel"))
        self._update_digits()
        self._shown()

    def _press_digit(self, d: str) -> None:
        if len(self._digits) < self._max_len:
            self._digits += d
        self._update_digits()

    def _press_edit(self, op: str) -> None:
        self._digits = "" if op == "clear" else self._digits[:-1]
        self._update_digits()

    def _update_digits(self) -> None:
        shown = to_persian_digits(self._digits) if self.lang == "fa" else self._digits
        self._display.text = ltr(shown) if shown else ""
        self._display.lang = self.lang
        for k, btn in self._keys.items():
            if k.isdigit():
                btn.text = to_persian_digits(k) if self.lang == "fa" else k
                btn.disabled = len(self._digits) >= self._max_len
        self._ok.disabled = len(self._digits) < self._min_len

    async def confirm(self, key: str, **params: Any) -> bool:
        self._left()
        fut = self._new_answer()
        self._layout(lambda: self._confirm_screen(fut, key, params))
        return bool(await self._wait(fut))

    def slips_to_pay(self, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The slips a basket's confirmation is about: the unpaid ones chosen from the list, when
        they are what it counts (none dropped since)."""
        if key != "basket.confirm":
            return []
        unpaid = [p for p in self._chosen_slips if p.get("status_key") == "slips.status.unpaid"]
        return unpaid if unpaid and len(unpaid) == params.get("count") else []

    def _confirm_screen(self, fut: asyncio.Future[Any], key: str, params: dict[str, Any]) -> None:
        self._clear("confirm", key)
        text = [self._label(key, size=38, **params)]
        if "bill_id" in params and "payment_id" in params:
            text.append(self._label("ui.bill_ids", size=28, color=MUTED, bill_id=params["bill_id"],
                                    payment_id=params["payment_id"]))
        slips = self.slips_to_pay(key, params)
        self.slip_cards = [self.slip_card_for(p) for p in slips]
        if self.slip_cards:  # each slip about to be paid, its details card
            cards = GridLayout(cols=1, spacing=mm_px(2), size_hint_y=None)
            cards.bind(minimum_height=cards.setter("height"))
            for card in self.slip_cards:
                cards.add_widget(card)
            scroll = ScrollView(do_scroll_x=False, bar_width=mm_px(2))
            scroll.add_widget(cards)
            if self.landscape:
                self.body.add_widget(Split(self._column(*text), scroll, landscape=True))
            else:
                for w in text:
                    self.body.add_widget(w)
                self.body.add_widget(scroll)
        else:
            self.body.add_widget(self._spacer())
            for w in text:
                self.body.add_widget(w)
            self.body.add_widget(self._spacer())
        self.footer.add_widget(self._button("ui.confirm", lambda: self._answer_with(fut, True), choice_id="yes",
                                            background=GOOD))
        self.footer.add_widget(self._button("ui.cancel", lambda: self._answer_with(fut, False), choice_id="no",
                                            background=CANCEL_BG))
        self._shown()

    async def show_error(self, key: str, **params: Any) -> None:
        if key in ("receipt.not_printed", "cert.shown"):
            self._receipt_not_printed = True
        if self._abandoned:
            return
        fut = self._new_answer()
        self._layout(lambda: self._error_screen(fut, key, params))
        await self._wait(fut, self.error_s)

    def _error_screen(self, fut: asyncio.Future[Any], key: str, params: dict[str, Any]) -> None:
        self._clear("error", key)
        self.body.add_widget(self._spacer())
        self.body.add_widget(self._label(key, size=38, color=BAD, **params))
        if "bill_id" in params and "payment_id" in params and "{bill_id}" not in render(key, "en"):
            # a slip the printer could not print: its ids are what the citizen photographs
            self.body.add_widget(self._label("ui.bill_ids", size=34, bill_id=params["bill_id"],
                                             payment_id=params["payment_id"]))
        self.body.add_widget(self._spacer())
        self.footer.add_widget(self._button("ui.ok", lambda: self._answer_with(fut, True), choice_id="ok"))
        self._shown()

    async def show_outcome(self, outcome: Outcome) -> None:
        self.last_outcome = outcome
        if self._abandoned:
            return
        fut = self._new_answer()
        self._layout(lambda: self._outcome_screen(fut, outcome))
        await self._wait(fut, self.outcome_s)

    def _outcome_screen(self, fut: asyncio.Future[Any], outcome: Outcome) -> None:
        self._clear("outcome", outcome.message_key)
        text = [self._label(outcome.message_key, size=38, bold=True, color=GOOD if outcome.ok else BAD,
                            **outcome.params)]
        tracking = outcome.params.get("tracking")
        if tracking and "{tracking}" not in render(outcome.message_key, "en"):
            text.append(self._label("ui.tracking", size=30, tracking=tracking))
        if outcome.transaction_id and "{tx}" not in render(outcome.message_key, "en"):
            text.append(self._label("ui.transaction", size=26, color=MUTED, tx=outcome.transaction_id))
        if outcome.receipt_payload and (self._receipt_not_printed or outcome.params.get("printed") is False):
            if outcome.params.get("printed") is not False:  # a ticket's outcome says it itself
                text.append(self._label("ui.receipt_qr", size=30))
            qr = self._qr(outcome.receipt_payload)
            if self.landscape:
                self.body.add_widget(self._beside(self._column(*text), qr))
            else:
                for w in text:
                    self.body.add_widget(w)
                self.body.add_widget(qr)
                self.body.add_widget(self._spacer())
        else:
            for w in text:
                self.body.add_widget(w)
            self.body.add_widget(self._spacer())
        self.footer.add_widget(self._button("ui.done", lambda: self._answer_with(fut, True), choice_id="done"))
        self._shown()

    def _qr(self, payload: str) -> Image:
        import qrcode  # at the first QR shown, not at the start (most sessions show none)

        qr = qrcode.QRCode(border=2, box_size=8, error_correction=qrcode.constants.ERROR_CORRECT_M)
        qr.add_data(payload)
        buf = io.BytesIO()
        qr.make_image(fill_color="black", back_color="white").save(buf, format="png")
        buf.seek(0)
        texture = CoreImage(buf, ext="png").texture
        texture.mag_filter = "nearest"
        side = max(mm_px(45), 360)
        img = Image(texture=texture, size_hint=(1, None), height=side, fit_mode="contain")
        img.qr_payload = payload
        return img

    # --- sessions --------------------------------------------------------------------------------
    async def attract(self) -> None:
        """The attract screen until somebody touches it."""
        fut = self._build_attract()
        await self._wait(fut, idle=False)

    def _build_attract(self) -> asyncio.Future[Any]:
        """Back to the start: Persian, nothing of the last citizen kept."""
        self.lang = self.default_lang
        self._abandoned = False
        self._receipt_not_printed = False
        self.large_text = self.high_contrast = self.speech_on = False  # the next citizen chooses again
        self.speaker.stop()
        self._identifier_masked, self._plate_parts, self._chosen_slips, self._detail = "", {}, [], None
        self._apply_lang()
        fut = self._new_answer()
        self._layout(lambda: self._attract_screen(fut))
        return fut

    def _attract_screen(self, fut: asyncio.Future[Any]) -> None:
        self._clear("attract")
        self.title.text, self.title.msg_key = "", None  # the name is the screen's own, in big
        self.body.add_widget(self._spacer())
        self.body.add_widget(self._label("ui.kiosk_name", size=72, bold=True, halign="center"))
        self._hint = self._label(HINTS[0], size=36, color=MUTED, halign="center")
        self.body.add_widget(self._hint)
        self.body.add_widget(self._spacer())
        start = self._button("ui.touch_to_start", lambda: self._answer_with(fut, True), choice_id="start", size=40)
        start.height = max(mm_px(30), 200)
        self.body.add_widget(start)
        self.body.add_widget(self._spacer())
        self.footer.add_widget(self._access_buttons())
        self._hint_i = 0
        self._hint_ev = Clock.schedule_interval(self._next_hint, self.hint_s)
        self._shown()

    def _next_hint(self, *_: Any) -> None:
        self._hint_i = (self._hint_i + 1) % len(HINTS)
        self._hint.show(HINTS[self._hint_i])

    def _stop_hints(self) -> None:
        if self._hint_ev is not None:
            self._hint_ev.cancel()
            self._hint_ev = None

    async def home(self) -> str | None:
        """The service tiles; the id picked, or None (cancel, inactivity)."""
        fut = self._new_answer()
        self._build_home(fut)
        try:
            return str(await self._wait(fut))
        except CitizenLeft:
            return None

    def _build_home(self, fut: asyncio.Future[Any]) -> None:
        self._relayout = lambda: self._build_home(fut)
        self._clear("home")
        self.body.add_widget(self._label("ui.choose_service", size=38, bold=True))
        # the tiles share the body's height: more services, shorter tiles, never off the screen
        # (a row stays at least a 15 mm target, plus a reason line when some tile has one). Nine
        # services take three columns; large text keeps two, for its longer lines. Landscape: five
        # (three in large text), the accessibility toggles beside Cancel to give the tiles room.
        any_down = any(not self.status.service(s.id).available for s in SERVICES)
        row_min = mm_px(MIN_TARGET_MM) + (62 if any_down else 0)
        if self.landscape:
            cols = HOME_COLUMNS_LANDSCAPE_LARGE if self.large_text else HOME_COLUMNS_LANDSCAPE
        else:
            cols = 2 if self.large_text or len(SERVICES) <= 6 else 3
        grid = Grid(cols=cols, spacing=mm_px(3), size_hint_y=1, row_default_height=row_min,
                    row_force_default=False)
        self.tiles: dict[str, TouchButton] = {}
        for service in SERVICES:
            state = self.status.service(service.id)
            cell = BoxLayout(orientation="vertical", spacing=4, size_hint_min_y=row_min)
            tile = self._button(service.title_key, lambda s=service.id: self._answer_with(fut, s),
                                choice_id=service.id, size=32 if cols == 2 else 29 if cols == 3 else 27)
            tile.size_hint_y = 1
            tile.disabled = not state.available
            cell.add_widget(tile)
            if not state.available and state.reason is not None:
                why = self._label(state.reason.key, size=22, color=BAD, halign="center", **dict(state.reason.params))
                why.size_hint_y, why.fit_height, why.height = None, False, 58
                tile.reason_label = why
                cell.add_widget(why)
            self.tiles[service.id] = tile
            grid.add_widget(cell)
        self.body.add_widget(grid)
        self.footer.add_widget(self._button("ui.cancel", lambda: self._answer_with(fut, CitizenLeft("home")),
                                            background=CANCEL_BG, choice_id="cancel"))
        if self.landscape:
            toggles = self._access_buttons()
            toggles.size_hint_x = len(toggles.children)
            self.footer.add_widget(toggles)
        else:
            self.body.add_widget(self._access_buttons())
        self._shown()

    async def run_sessions(self, ctx: Any, *, sessions: int | None = None,
                           on_idle: Callable[[], None] | None = None) -> None:
        """Attract → home → a flow → its outcome, for ever (or `sessions` times)."""
        importlib.import_module("screens.maintenance").attach(self, ctx)  # technician's hidden entry (issue 10, item 5)
        n = 0
        while sessions is None or n < sessions:
            if on_idle is not None:
                on_idle()
            await self.attract()
            service = await self.home()
            if service is None:
                continue
            n += 1
            await self.run_service(ctx, service)
        self._build_attract()  # the last session over: the attract screen, waiting for nobody

    async def run_service(self, ctx: Any, service_id: str) -> Any:
        spec = next(s for s in SERVICES if s.id == service_id)
        module, _, cls = spec.flow.partition(":")
        flow = getattr(importlib.import_module(module), cls)(ctx, self)
        try:
            return await flow.run()
        except CitizenLeft:
            return None
        except Exception:
            log.exception("flow %s failed", service_id)
            await self.show_error("service.unavailable")
            return None
        finally:
            self._digits = ""


class KioskApp(App):
    """The Kivy app around a KivyUI. Kiosk mode ignores Escape and the window's close."""

    title = "City Kiosk"

    def __init__(self, ui: KivyUI, *, kiosk_mode: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ui = ui
        self.kiosk_mode = kiosk_mode
        self.started = asyncio.get_event_loop().create_future()

    def build(self) -> Widget:
        root = self.ui.build()
        Window.bind(on_keyboard=self._on_keyboard)
        if self.kiosk_mode:
            Window.bind(on_request_close=lambda *_args, **_kw: True)
        return root

    def on_start(self) -> None:
        if not self.started.done():
            self.started.set_result(None)

    def _on_keyboard(self, _window: Any, key: int, *_: Any) -> bool:
        return key == 27  # Escape (and Android's back): swallowed, never closes the kiosk


__all__ = ["KioskApp", "KivyUI", "MIN_TARGET_MM", "SERVICES", "mm_px"]
