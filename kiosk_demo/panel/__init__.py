"""The device simulator panel of the demo (`kiosk demo --panel`): a loopback web page that
drives the embedded simulators. See docs/panel.md."""

from kiosk_demo.panel.server import GUARD_HEADER, Panel, PanelServer, barcode_of, serve_panel

__all__ = ["GUARD_HEADER", "Panel", "PanelServer", "barcode_of", "serve_panel"]
