"""A fake Slack Web API on a loopback port, for the Slack adapter's tests.

It speaks the real wire protocol, so slack-sdk's `AsyncWebClient` (given `base_url=fake.api_url`) and
bolt's `respond()` (given a `response_url` from `fake.response_url()`) run unpatched:

    POST /api/<method>       Web API methods; arguments as query string, form, JSON or multipart
    POST /upload/<file_id>   the upload URL `files.getUploadURLExternal` hands out (step 2 of
                             `files_upload_v2`); the raw bytes are kept in `fake.uploads`
    POST /response/<name>    a `response_url` of an interaction payload

Socket Mode's `apps.connections.open` answers with `fake.socket_url`, a WebSocket the test serves.

Every request is recorded as a `Call` (method, merged arguments, files, raw body). Like Slack, the
server refuses a message whose Block Kit breaks Slack's limits (`invalid_blocks`, `msg_too_long`,
`no_text`), and `block_kit_violations` names each broken limit so tests can assert on it.

`fake.fail("chat.postMessage", "channel_not_found")` makes a method answer `ok: false` from then on;
`gate = fake.hold("response_url")` keeps its requests waiting until `gate.set()`.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.loopback import LoopbackHTTPServer

#: Slack's documented Block Kit limits (docs.slack.dev/reference/block-kit).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_TEXT = 3000
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_TEXT = 75
MAX_ACTION_ID = 255
MAX_BUTTON_VALUE = 2000
MAX_BLOCK_ID = 255
MAX_IMAGE_ALT = 2000
#: `text` is truncated by Slack past 40,000 characters; the fake refuses it instead.
MAX_MESSAGE_TEXT = 40_000

BOT_USER_ID = "UROUNDTBL"
BOT_ID = "BROUNDTBL"
TEAM_ID = "T0TEAM"

#: Methods whose payload is a message (blocks and text are checked on them).
MESSAGE_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral", "response_url"})


@dataclass(frozen=True)
class Call:
    """One request the fake received."""

    method: str
    #: Query, form and JSON arguments merged; `blocks` given as a JSON string is decoded.
    args: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    raw: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def blocks(self) -> list[dict[str, Any]]:
        blocks = self.args.get("blocks") or []
        return list(blocks) if isinstance(blocks, list) else []

    @property
    def text(self) -> str:
        return str(self.args.get("text") or "")


def block_kit_violations(payload: Mapping[str, Any]) -> list[str]:
    """Every Slack limit that a message payload (`text`, `blocks`) breaks; empty when it is valid."""
    problems: list[str] = []
    text = payload.get("text")
    blocks = payload.get("blocks")
    if not text and not blocks:
        problems.append("no_text: neither text nor blocks")
    if text is not None and len(str(text)) > MAX_MESSAGE_TEXT:
        problems.append(f"msg_too_long: text is {len(str(text))} characters")
    if blocks is None:
        return problems
    if not isinstance(blocks, list):
        return [*problems, "invalid_blocks: blocks is not a list"]
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"invalid_blocks: {len(blocks)} blocks, the limit is {MAX_BLOCKS}")
    for i, block in enumerate(blocks):
        problems.extend(
            f"invalid_blocks: block {i} ({block.get('type')}): {p}" for p in _block_problems(block)
        )
    return problems


def _block_problems(block: Mapping[str, Any]) -> list[str]:
    kind = block.get("type")
    problems: list[str] = []
    if len(str(block.get("block_id", ""))) > MAX_BLOCK_ID:
        problems.append("block_id too long")
    check = _BLOCK_CHECKS.get(str(kind))
    if check is None:
        return [*problems, f"unknown block type {kind!r}"]
    return problems + check(block)


def _section_problems(block: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    text = block.get("text")
    fields_ = block.get("fields") or []
    if text is None and not fields_:
        problems.append("a section needs text or fields")
    if text is not None:
        problems.extend(_text_problems(text, MAX_SECTION_TEXT, "text"))
    if len(fields_) > MAX_SECTION_FIELDS:
        problems.append(f"{len(fields_)} fields, the limit is {MAX_SECTION_FIELDS}")
    for f in fields_:
        problems.extend(_text_problems(f, MAX_FIELD_TEXT, "field"))
    if "accessory" in block:
        problems.extend(_element_problems(block["accessory"]))
    return problems


def _header_problems(block: Mapping[str, Any]) -> list[str]:
    text = block.get("text") or {}
    problems = [] if text.get("type") == "plain_text" else ["a header's text must be plain_text"]
    return problems + _text_problems(text, MAX_HEADER_TEXT, "header")


def _context_problems(block: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    elements = block.get("elements") or []
    if not elements:
        problems.append("a context needs elements")
    if len(elements) > MAX_CONTEXT_ELEMENTS:
        problems.append(f"{len(elements)} context elements, the limit is {MAX_CONTEXT_ELEMENTS}")
    for element in elements:
        if element.get("type") in ("mrkdwn", "plain_text"):
            problems.extend(_text_problems(element, MAX_CONTEXT_TEXT, "context text"))
    return problems


def _actions_problems(block: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    elements = block.get("elements") or []
    if not elements:
        problems.append("an actions block needs elements")
    if len(elements) > MAX_ACTIONS_ELEMENTS:
        problems.append(f"{len(elements)} actions, the limit is {MAX_ACTIONS_ELEMENTS}")
    action_ids = [e.get("action_id") for e in elements if e.get("action_id")]
    if len(action_ids) != len(set(action_ids)):
        problems.append("action_ids repeat within the block")
    for element in elements:
        problems.extend(_element_problems(element))
    return problems


def _image_problems(block: Mapping[str, Any]) -> list[str]:
    return ["alt_text too long"] if len(str(block.get("alt_text", ""))) > MAX_IMAGE_ALT else []


#: The checks of each block type the fake knows; a divider has nothing to check.
_BLOCK_CHECKS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "section": _section_problems,
    "header": _header_problems,
    "context": _context_problems,
    "actions": _actions_problems,
    "image": _image_problems,
    "divider": lambda block: [],
}


def _element_problems(element: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if element.get("type") == "button":
        text = element.get("text") or {}
        if text.get("type") != "plain_text":
            problems.append("a button's text must be plain_text")
        problems.extend(_text_problems(text, MAX_BUTTON_TEXT, "button text"))
        if len(str(element.get("value", ""))) > MAX_BUTTON_VALUE:
            problems.append("button value too long")
    if len(str(element.get("action_id", ""))) > MAX_ACTION_ID:
        problems.append("action_id too long")
    return problems


def _text_problems(text: Any, limit: int, what: str) -> list[str]:
    if not isinstance(text, Mapping) or text.get("type") not in ("mrkdwn", "plain_text"):
        return [f"{what} is not a text object"]
    body = str(text.get("text", ""))
    if not body:
        return [f"{what} is empty"]
    if len(body) > limit:
        return [f"{what} is {len(body)} characters, the limit is {limit}"]
    return []


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature: `v0=` + HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, sha256).hexdigest()


def signed_headers(secret: str, body: bytes, content_type: str) -> dict[str, str]:
    """The headers Slack sends with an event or an interaction, signed now."""
    timestamp = str(int(time.time()))
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(secret, timestamp, body),
    }


class FakeSlack:
    """The fake Web API in a background thread; use it as a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        # Re-entrant: a `wait_for` predicate may read `calls` while the condition holds the lock.
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._failures: dict[str, str] = {}
        self._holds: dict[str, threading.Event] = {}
        self._ts = itertools.count(1)
        self._file_ids = itertools.count(1)
        self.uploads: dict[str, bytes] = {}
        #: The WebSocket URL `apps.connections.open` hands out (Socket Mode); None refuses the call.
        self.socket_url: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition(self._lock)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        if self._server is None:
            self._server = _Server((self._host, self._requested_port), _Handler, fake=self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="fake-slack", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started; call start() or use it as a context manager")
        return f"http://{self._host}:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """The Web API base URL, for `AsyncWebClient(base_url=...)` / `ROUNDTABLE_SLACK_API_URL`."""
        return f"{self.root}/api/"

    def response_url(self, name: str = "r") -> str:
        """A `response_url` to put in an interaction payload."""
        return f"{self.root}/response/{name}"

    # -- what tests read and set -----------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def messages(self) -> list[Call]:
        """Every call that carried a message payload (posts, updates, ephemerals, response_url)."""
        return [c for c in self.calls if c.method in MESSAGE_METHODS]

    def fail(self, method: str, error: str) -> None:
        """Make `method` answer `{"ok": false, "error": error}` until `clear_failures()`."""
        with self._lock:
            self._failures[method] = error

    def hold(self, method: str) -> threading.Event:
        """Keep answers to `method` waiting (recorded, but not replied to) until the event is set."""
        gate = threading.Event()
        with self._lock:
            self._holds[method] = gate
        return gate

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self.uploads.clear()

    def wait_for(self, predicate: Callable[[list[Call]], bool], timeout: float = 15.0) -> list[Call]:
        """Block (in a thread) until `predicate(calls)` holds; raise TimeoutError with the calls seen."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._calls)):
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [c.method for c in self._calls]
                    raise TimeoutError(f"the awaited Slack calls never came; seen: {seen}")
                self._changed.wait(left)
            return list(self._calls)

    # -- what the request handler calls -----------------------------------------------------------

    def record(self, call: Call) -> str | None:
        """Record a call, wait while its method is held; the error it must fail with, if any."""
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()
            gate = self._holds.get(call.method)
            failure = self._failures.get(call.method)
        if gate is not None:
            gate.wait(30)
        return failure

    def store_upload(self, file_id: str, data: bytes) -> None:
        with self._changed:
            self.uploads[file_id] = data
            self._changed.notify_all()

    def answer(self, call: Call) -> dict[str, Any]:
        """The Web API's reply to a recorded call."""
        if call.method in MESSAGE_METHODS:
            problems = block_kit_violations(call.args)
            if problems:
                return {"ok": False, "error": problems[0].split(":", 1)[0], "errors": problems}
        reply = self._replies().get(call.method)
        return reply(call.args) if reply is not None else {"ok": True}

    # -- internals -------------------------------------------------------------------------------

    def _replies(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The Web API methods whose reply carries more than `ok`, by name."""
        return {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": lambda args: {"ok": True, "message_ts": self._next_ts()},
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"{self.root}/",
            "team": "Fake Team",
            "user": "roundtable",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.socket_url is None:
            return {"ok": False, "error": "not_allowed_token_type"}
        return {"ok": True, "url": self.socket_url}

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self._next_ts()
        message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts}
        message.update({k: args[k] for k in ("text", "blocks", "thread_ts") if k in args})
        return {"ok": True, "channel": args.get("channel"), "ts": ts, "message": message}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts"), "text": args.get("text")}

    def _upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = self._next_file_id()
        return {"ok": True, "upload_url": f"{self.root}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        listed = [{"id": f.get("id"), "title": f.get("title")} for f in files or []]
        missing = [f["id"] for f in listed if f["id"] not in self.uploads]
        if missing:
            return {"ok": False, "error": "file_not_found", "files": missing}
        return {"ok": True, "files": listed}

    def _next_ts(self) -> str:
        with self._lock:
            return f"1700000000.{next(self._ts):06d}"

    def _next_file_id(self) -> str:
        with self._lock:
            return f"F{next(self._file_ids):08d}"


class _Server(LoopbackHTTPServer):
    def __init__(self, address: tuple[str, int], handler: type[_Handler], *, fake: FakeSlack) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if url.path.startswith("/upload/"):
            file_id = url.path.removeprefix("/upload/")
            fake.record(Call(method="upload", args={"file_id": file_id}, raw=raw, headers=headers))
            fake.store_upload(file_id, raw)
            self._send(200, "text/plain", f"OK - {len(raw)}".encode())
            return
        if url.path.startswith("/response/"):
            args = _decode(json.loads(raw or b"{}"))
            call = Call(method="response_url", args=args, raw=raw, headers=headers)
            failure = fake.record(call)
            problems = block_kit_violations(args)
            if failure or problems:
                body = {"ok": False, "error": failure or problems[0].split(":", 1)[0]}
                self._send(400, "application/json", json.dumps(body).encode())
            else:
                self._send(200, "text/plain", b"ok")
            return
        if not url.path.startswith("/api/"):
            self._send(404, "application/json", b'{"ok": false, "error": "unknown_method"}')
            return
        method = url.path.removeprefix("/api/")
        args, files = _arguments(url.query, headers, raw)
        call = Call(method=method, args=args, files=files, raw=raw, headers=headers)
        failure = fake.record(call)
        reply = {"ok": False, "error": failure} if failure else fake.answer(call)
        self._send(200, "application/json", json.dumps(reply).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


def _arguments(query: str, headers: Mapping[str, str], raw: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Query string, then form / JSON / multipart body, merged into one argument dict."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    files: dict[str, bytes] = {}
    content_type = headers.get("content-type", "")
    if content_type.startswith("application/json"):
        args.update(json.loads(raw or b"{}"))
    elif content_type.startswith("application/x-www-form-urlencoded"):
        args.update(parse_qsl(raw.decode(), keep_blank_values=True))
    elif content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
        )
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            decoded = part.get_payload(decode=True)
            payload = decoded if isinstance(decoded, bytes) else b""
            if part.get_filename():
                files[str(name)] = payload
            else:
                args[str(name)] = payload.decode()
    return _decode(args), files


def _decode(args: dict[str, Any]) -> dict[str, Any]:
    """Form-encoded `blocks`/`files` arrive as JSON strings; decode them as Slack does."""
    for key in ("blocks", "files", "attachments"):
        value = args.get(key)
        if isinstance(value, str) and value.startswith("["):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args


__all__: Sequence[str] = (
    "BOT_USER_ID",
    "TEAM_ID",
    "Call",
    "FakeSlack",
    "block_kit_violations",
    "signature",
    "signed_headers",
)
