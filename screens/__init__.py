"""The touch UI (Kivy): the Kivy implementation of kiosk.ui_port.UIPort and its screens.

Kivy is imported only here and in the UI entry point (kiosk.ui_main); the kiosk core never
imports this package. Text goes through one widget, screens.rtl.RTLLabel, which draws with
kiosk.text.paragraph (the receipts' Persian text code)."""
