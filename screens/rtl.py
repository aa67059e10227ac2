"""RTLLabel: the one widget that draws text on the kiosk's screens, Persian or English.

It holds the LOGICAL string (`text`), never a shaped or reordered one, and draws it through
kiosk.text.paragraph: wrapped in logical order to the widget's width, each line shaped and
ordered by raqm (letters joined; numbers, ids and Latin words left to right), right-aligned in
Persian and left-aligned in English. It re-draws when the text, language, size, colour or
width changes. `lines` holds the logical lines now drawn, top to bottom (for tests).

A label may carry a message key and params (`show(key, **params)`): changing the screen's
language re-renders it from the catalog (screens.app walks the tree and calls `relabel`).
"""

from __future__ import annotations

from typing import Any

from kivy.clock import Clock
from kivy.graphics import Color, Rectangle
from kivy.graphics.texture import Texture
from kivy.properties import (BooleanProperty, ColorProperty, ListProperty, NumericProperty,
                             ObjectProperty, OptionProperty, StringProperty)
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.widget import Widget
from PIL import Image

from kiosk.messages_ui import render
from kiosk.text.paragraph import render_paragraph


class RTLLabel(Widget):
    text = StringProperty("")
    lang = StringProperty("fa")
    font_size = NumericProperty(28)
    bold = BooleanProperty(False)
    color = ColorProperty([0.1, 0.1, 0.12, 1])
    halign = OptionProperty("auto", options=["auto", "left", "center", "right"])
    valign = OptionProperty("middle", options=["top", "middle", "bottom"])
    #: grow or shrink the height to the drawn lines (a paragraph in a vertical layout)
    fit_height = BooleanProperty(False)
    lines = ListProperty([])
    #: the bitmap drawn, reused while its size stays the same
    texture = ObjectProperty(None, allownone=True)
    renders = NumericProperty(0)  # how many times it was drawn (tests: it re-renders)
    #: when set, the height is at least this and grows to the drawn lines (a button whose caption
    #: wraps, in large text)
    grow = NumericProperty(0)

    def __init__(self, **kwargs: Any) -> None:
        self.msg_key: str | None = None
        self.msg_params: dict[str, Any] = {}
        super().__init__(**kwargs)
        with self.canvas:
            self._color = Color(1, 1, 1, 1)
            self._rect = Rectangle(size=(0, 0))
        self._trigger = Clock.create_trigger(self._render, -1)
        for prop in ("text", "lang", "font_size", "bold", "color", "halign", "width"):
            self.fbind(prop, self._trigger)
        self.fbind("pos", self._place)
        self.fbind("height", self._place)
        self._trigger()

    def show(self, key: str, lang: str | None = None, **params: Any) -> "RTLLabel":
        """Show message `key` with `params`; kept so a language change can re-render it."""
        self.msg_key, self.msg_params = key, dict(params)
        if lang is not None:
            self.lang = lang
        self.text = render(key, self.lang, **params)
        return self

    def relabel(self, lang: str) -> None:
        """Re-render in `lang`: from the message key when it has one, else the same text in
        the new direction (a number, an id)."""
        self.lang = lang
        if self.msg_key is not None:
            self.text = render(self.msg_key, lang, **self.msg_params)

    def _render(self, *_: Any) -> None:
        if self.width <= 1:
            return
        rgba = tuple(int(round(c * 255)) for c in self.color)
        para = render_paragraph(self.text, int(self.width), int(self.font_size), lang=self.lang,
                                bold=self.bold, color=rgba, halign=self.halign)  # type: ignore[arg-type]
        img = para.image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)  # GL textures start at the bottom row
        tex = self.texture
        if tex is None or tuple(tex.size) != img.size:
            # a new bitmap size: a new texture (the old one goes with its last reference)
            tex = Texture.create(size=img.size, colorfmt="rgba")
        # else the same size: drawn into the texture already on the GPU, as Kivy's own Label
        # does (kivy/core/text: ask_update on an unchanged size). A texture per render cost
        # ~4 MB each under llvmpipe, given back only much later: the peak grew with every key
        tex.blit_buffer(img.tobytes(), colorfmt="rgba", bufferfmt="ubyte")
        # assigned again (as kivy.uix.label does, None first) so the property fires and the
        # rectangle is flagged to draw the new pixels
        self.texture = None
        self.texture = tex
        self.lines = list(para.lines) if self.text else []
        self.renders += 1
        if self.fit_height:
            self.height = img.height
        elif self.grow:
            self.height = max(self.grow, img.height + 20)
        self._place()

    def _place(self, *_: Any) -> None:
        tex = self.texture
        if tex is None:
            return
        w, h = tex.size
        if self.valign == "top":
            y = self.top - h
        elif self.valign == "bottom":
            y = self.y
        else:
            y = self.y + (self.height - h) / 2
        self._rect.texture = tex
        self._rect.pos = (self.x, y)
        self._rect.size = (w, h)


class TouchButton(ButtonBehavior, RTLLabel):
    """A big touch target whose caption is an RTLLabel (Kivy's Button cannot lay out Persian).
    `choice_id` is what pressing it answers."""

    background = ColorProperty([0.13, 0.42, 0.62, 1])
    pressed_background = ColorProperty([0.08, 0.28, 0.42, 1])
    disabled_background = ColorProperty([0.72, 0.72, 0.74, 1])
    choice_id = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("halign", "center")
        kwargs.setdefault("color", [1, 1, 1, 1])
        super().__init__(**kwargs)
        with self.canvas.before:
            self._bg_color = Color(*self.background)
            self._bg = Rectangle(pos=self.pos, size=self.size)
        self.fbind("pos", self._paint)
        self.fbind("size", self._paint)
        self.fbind("state", self._paint)
        self.fbind("disabled", self._paint)
        self.fbind("background", self._paint)

    def _paint(self, *_: Any) -> None:
        if self.disabled:
            self._bg_color.rgba = self.disabled_background
        elif self.state == "down":
            self._bg_color.rgba = self.pressed_background
        else:
            self._bg_color.rgba = self.background
        self._bg.pos, self._bg.size = self.pos, self.size
