"""An in-memory stand-in for the tocsin host, so the plugin's logic runs
natively under `python3 -m unittest` (in the engine, componentize-py
generates the real `wit_world` bindings from `wit/`). It mirrors the WIT's
documented semantics closely enough for unit tests; `tocsin plugin test`
runs the built component under the engine itself.

Import it before the plugin: `import fake_host` installs the modules
`wit_world`, `wit_world.imports.{types,log,state,websocket,email,http}` and
`componentize_py_types`. `fake_host.reset()` clears state, logs and
deliveries between tests.
"""

import enum
import sys
import types as _pytypes
from dataclasses import dataclass, field


class Err(Exception):
    """`result::err` across the boundary (componentize-py's type)."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


class Severity(enum.Enum):
    CRITICAL = 0
    HIGH = 1
    MEDIUM = 2
    LOW = 3


class Level(enum.Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


@dataclass
class ErrorEvent:
    event_id: str = "e-1"
    source: str = "http"
    error_code: str = "E1"
    severity: Severity = Severity.HIGH
    message: str = "it failed"
    service_name: str = "svc"
    timestamp: int = 0
    received_at: int = 0
    user_message: object = None
    user_id: object = None
    stack_trace: object = None
    metadata: list = field(default_factory=list)


@dataclass
class Alert:
    key: str = "E1|svc"
    rule: str = "test"
    count: int = 3
    first_seen: int = 0
    last_seen: int = 0
    severity: Severity = Severity.HIGH
    title: str = "E1 x3 on svc"
    summary: str = "3 events"
    samples: list = field(default_factory=list)
    labels: list = field(default_factory=list)


@dataclass
class WindowHit:
    before: int
    fires: int
    after: int
    window_start: int


@dataclass
class Message:
    to: list
    subject: str
    text: str
    html: object = None


@dataclass
class Request:
    method: str
    url: str
    headers: list
    body: bytes


STATE = {}
LOGS = []
DELIVERIES = []


def reset():
    STATE.clear()
    LOGS.clear()
    DELIVERIES.clear()


def window_add(key, delta, now, window_ms, threshold):
    count, start = STATE.get(key, (0, now))
    if now - start >= window_ms:
        count, start = 0, now
    total = count + delta
    fires, after = (total // threshold, total % threshold) if threshold else (0, total)
    if after:
        STATE[key] = (after, now if fires else start)
    else:
        STATE.pop(key, None)
    return WindowHit(before=count, fires=fires, after=after, window_start=start)


def _module(name, **members):
    module = _pytypes.ModuleType(name)
    module.__dict__.update(members)
    sys.modules[name] = module
    return module


def _record(kind):
    return lambda value: DELIVERIES.append((kind, value))


_types = _module("wit_world.imports.types", Severity=Severity, ErrorEvent=ErrorEvent, Alert=Alert)
_log = _module("wit_world.imports.log", Level=Level, log=lambda level, message: LOGS.append((level, message)))
_state = _module(
    "wit_world.imports.state",
    WindowHit=WindowHit,
    window_add=window_add,
    get=lambda key: STATE.get(key),
    set=lambda key, value, ttl_ms: STATE.__setitem__(key, value),
    set_if_absent=lambda key, value, ttl_ms: STATE.setdefault(key, value) is value,
    delete=lambda key: STATE.pop(key, None) and None,
)
_websocket = _module("wit_world.imports.websocket", broadcast=_record("websocket"))
_email = _module("wit_world.imports.email", Message=Message, send=_record("email"))
_http = _module("wit_world.imports.http", Request=Request, send=_record("http"))
_imports = _module(
    "wit_world.imports", types=_types, log=_log, state=_state, websocket=_websocket, email=_email, http=_http
)
_module("wit_world", imports=_imports, WitWorld=type("WitWorld", (), {}))
_module("componentize_py_types", Err=Err)
