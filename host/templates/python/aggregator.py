"""`{{name}}`: an aggregator. It alerts once `threshold` events with the
same error code and service arrive within `window`, counted in the host's
state (so the count survives restarts and is shared by instances), and logs
each alert.

    [aggregate]
    plugin = "{{name}}"
    config = { threshold = 3, window = "1m" }

Built by `tocsin plugin build` with componentize-py; the bindings
(`wit_world`) are generated from `wit/` at build time.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, state, types

# Per-binding settings (one entry per rule using this plugin). The host
# calls `configure` again after a restart or a fresh instance, so nothing
# here must be kept that cannot be lost: counts live in `state`.
SETTINGS = {}

UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(key, value):
    """`"90s"`, `"5m"`, `"1h"` (or a number of ms) in milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        for unit in sorted(UNITS_MS, key=len, reverse=True):
            number = value[: -len(unit)]
            if value.endswith(unit) and number.isdigit() and int(number) > 0:
                return int(number) * UNITS_MS[unit]
    raise Err(f"`{key}`: expected a duration like \"30s\", \"5m\" or \"1h\", got {value!r}")


def settings(config_json):
    """The settings of one binding, from its configuration (JSON text)."""
    config = json.loads(config_json)
    unknown = sorted(set(config) - {"threshold", "window"})
    if unknown:
        raise Err(f"unknown key `{unknown[0]}` (this plugin reads `threshold` and `window`)")
    threshold = config.get("threshold", 3)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise Err(f"`threshold`: must be an integer of at least 1, got {threshold!r}")
    return threshold, duration_ms("window", config.get("window", "1m"))


class WitWorld(wit_world.WitWorld):
    def configure(self, binding: str, config: str) -> None:
        SETTINGS[binding] = settings(config)

    def aggregate(self, binding: str, events):
        threshold, window_ms = SETTINGS[binding]
        alerts = []
        for e in events:
            key = f"{e.error_code}|{e.service_name}"
            hit = state.window_add(key, 1, e.received_at, window_ms, threshold)
            if hit.fires > 0:
                log.log(log.Level.INFO, f"{key} reached {threshold}")
                alerts.append(
                    types.Alert(
                        key=key,
                        rule="",  # filled in by the host
                        count=threshold,
                        first_seen=hit.window_start,
                        last_seen=e.received_at,
                        severity=e.severity,
                        title=f"{e.error_code} on {e.service_name}",
                        summary=f"{threshold} events within {window_ms // 1000} s: {e.message}",
                        samples=[e.message],
                        labels=[("error-code", e.error_code), ("service", e.service_name)],
                    )
                )
        return alerts
