"""A Python aggregator for the plugin-kit tests, built with
componentize-py's default options (no --stub-wasi): it alerts once
`threshold` events with the same error code and service arrive within
`window_ms`, on the host's windowed counter, like the Rust template."""

import json
import wit_world
from wit_world.imports import state, types
from componentize_py_types import Err

SETTINGS = {}

class WitWorld(wit_world.WitWorld):
    def configure(self, binding: str, config: str) -> None:
        c = json.loads(config)
        t = c.get("threshold", 3)
        if not isinstance(t, int) or t <= 0:
            raise Err("`threshold` must be a positive integer")
        SETTINGS[binding] = (t, c.get("window_ms", 60000))

    def aggregate(self, binding, events):
        t, w = SETTINGS[binding]
        alerts = []
        for e in events:
            key = f"{e.error_code}|{e.service_name}"
            hit = state.window_add(key, 1, e.received_at, w, t)
            if hit.fires > 0:
                alerts.append(types.Alert(key=key, rule="", count=t, first_seen=hit.window_start,
                    last_seen=e.received_at, severity=e.severity, title=f"{e.error_code} on {e.service_name}",
                    summary=e.message, samples=[e.message], labels=[("error-code", e.error_code), ("service", e.service_name)]))
        return alerts
