"""Citizen flows, driven through the UI port (kiosk.ui_port)."""
