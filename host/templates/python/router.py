"""`{{name}}`: a router. Critical and high alerts go to every channel of the
rule; medium and low ones only to the channels named in `quiet` (default
`["websocket"]`).

    [route]
    plugin = "{{name}}"
    config = { quiet = ["websocket"] }

Built by `tocsin plugin build` with componentize-py; the bindings
(`wit_world`) are generated from `wit/` at build time.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

SETTINGS = {}


def settings(config_json):
    """The channels that get medium and low alerts, from the configuration."""
    config = json.loads(config_json)
    unknown = sorted(set(config) - {"quiet"})
    if unknown:
        raise Err(f"unknown key `{unknown[0]}` (this plugin reads `quiet`)")
    quiet = config.get("quiet", ["websocket"])
    if not isinstance(quiet, list) or not all(isinstance(c, str) for c in quiet):
        raise Err(f"`quiet`: expected a list of channel names, got {quiet!r}")
    return quiet


class WitWorld(wit_world.WitWorld):
    def configure(self, binding: str, config: str) -> None:
        SETTINGS[binding] = settings(config)

    def route(self, binding: str, alert, channels):
        if alert.severity in (types.Severity.CRITICAL, types.Severity.HIGH):
            return channels
        return [c for c in channels if c in SETTINGS[binding]]
