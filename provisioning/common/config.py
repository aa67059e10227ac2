"""Configuration layers (fleet → site → kiosk) and how they merge into one kiosk.json.

A layer is a partial kiosk.json: only the keys a fleet may set. The identity and secrets of
a kiosk (LOCAL_ONLY) stay in its own kiosk.json and a layer naming one is refused. Merging:
a later layer's key replaces an earlier one's, except objects (``extra``), which merge key by
key. Every layer and the merged result are checked with the same schema the kiosk loads
kiosk.json with (kiosk.settings.schema_problem)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from provisioning.common.signing import canonical, sha256_hex

DOC_TYPE = "kiosk-config"
#: kiosk.json keys a fleet never sets: who the kiosk is and the secrets it holds
LOCAL_ONLY = ("kiosk_id", "backoffice_token", "transit_master_key_file")
SCOPES = ("fleet", "site", "kiosk")


def merge(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        _merge_into(out, layer)
    return out


def _merge_into(out: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            inner = dict(out[key])
            _merge_into(inner, value)
            out[key] = inner
        else:
            out[key] = value


def layer_problem(layer: Any) -> str | None:
    """Why `layer` cannot be a configuration layer, or None."""
    from kiosk.settings import schema_problem

    if not isinstance(layer, dict):
        return "a configuration layer is one JSON object"
    for key in LOCAL_ONLY:
        if key in layer:
            return f"{key!r} is the kiosk's own (identity or secret) and cannot come from the fleet"
    try:
        canonical(layer)
    except ValueError as exc:
        return str(exc)
    return schema_problem(layer)


def covers(actual: Any, desired: Any) -> bool:
    """Whether `actual` is what `desired` asks for: equal, or for objects every desired key
    covered (an object may hold keys of the kiosk's own too, e.g. extra.fleet from commands)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(k in actual and covers(actual[k], v) for k, v in desired.items())
    return bool(actual == desired) and isinstance(actual, bool) == isinstance(desired, bool)


def settings_hash(settings: Mapping[str, Any]) -> str:
    return sha256_hex(canonical(dict(settings)))
