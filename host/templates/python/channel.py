"""`{{name}}`: a channel. It renders an alert as one JSON frame on the live
WebSocket stream (`/v1/ws`), its title prefixed. Channels do no I/O
themselves: they hand deliveries to host capabilities (`websocket`,
`email`, `http`), each of which the rule must grant.

    [[channels]]
    plugin = "{{name}}"
    grants = { websocket = true }
    config = { prefix = "[{{name}}]" }

Built by `tocsin plugin build` with componentize-py; the bindings
(`wit_world`) are generated from `wit/` at build time.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import websocket

SETTINGS = {}


def settings(config_json):
    """The title prefix, from the configuration."""
    config = json.loads(config_json)
    unknown = sorted(set(config) - {"prefix"})
    if unknown:
        raise Err(f"unknown key `{unknown[0]}` (this plugin reads `prefix`)")
    prefix = config.get("prefix", "[{{name}}]")
    if not isinstance(prefix, str):
        raise Err(f"`prefix`: expected a string, got {prefix!r}")
    return prefix


def render(alert, prefix):
    """The frame for `alert`: what /v1/ws clients and its ?rule= filter read."""
    return json.dumps({
        "type": "alert",
        "rule": alert.rule,
        "key": alert.key,
        "count": alert.count,
        "title": f"{prefix} {alert.title}",
        "summary": alert.summary,
    })


class WitWorld(wit_world.WitWorld):
    def configure(self, binding: str, config: str) -> None:
        SETTINGS[binding] = settings(config)

    def deliver(self, binding: str, alert) -> None:
        # Raises Err (naming what was refused) when the rule did not grant it.
        websocket.broadcast(render(alert, SETTINGS[binding]))
