"""The kiosk-side fleet agent (`kiosk agent enroll|run|status`): enrolls with its own Ed25519
key, signs every request, sends heartbeats, applies signed configuration to kiosk.json under
the kiosk's data lock and only with no citizen transaction open, and runs commands.

Appliance code: imports only what the appliance may (no FastAPI, SQLAlchemy, … — checked by
tests/test_fleet_structure.py)."""
