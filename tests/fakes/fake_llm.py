"""A fake OpenAI-compatible chat server that LiteLLM calls over loopback.

It speaks the real wire protocol (the `openai/` provider of LiteLLM posts to it), so the code under test
runs unpatched. Replies to a request with a JSON schema are a valid instance of that schema, generated
deterministically from a hash of the messages: the same prompt gets the same answer, and agents whose
prompts differ pick different enum values, so their votes differ.

Knobs (constructor keywords, `FakeLLM.set`, or `POST /_control` for a server in another process):

    latency_s       fixed delay before each reply
    malformed_rate  probability that the content is chatter instead of JSON
    error_rate      probability of an HTTP error (`fail_status`, 500 by default) with an OpenAI-style body
    fail_first      answer the first N requests (counted since the last reset) with `fail_status`
    fail_status     the HTTP status of injected failures: 429 (rate limited), 500, 502, 503 (retried), or 400
    retry_after_s   when set, failures carry a `Retry-After` header of this many seconds
    stall           accept requests and never answer (until the server stops)
    seed            seeds the RNG behind the two rates, and salts the generated content
    reply           a fixed content string for every reply (None: generate one)
    responder       a hook `(body) -> content | None`; None falls back to the default content

Run it standalone with `python -m tests.fakes.fake_llm --port 0 --latency 0.3`; the first line on stdout
is `listening on http://127.0.0.1:PORT/v1`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any

from tests.fakes.loopback import LoopbackHTTPServer

Responder = Callable[[dict[str, Any]], str | None]

MALFORMED_REPLY = "Sure! Here is my answer: I think we should go with the first option."

_WORDS = (
    "clear", "steady", "simple", "careful", "shared", "direct", "modest", "robust", "plan", "budget",
    "team", "risk", "cost", "users", "trial", "pilot", "review", "launch", "support", "quality",
    "speed", "focus", "evidence", "metrics", "feedback", "option", "approach", "scope", "timeline", "value",
)  # fmt: skip

_SENTENCES = (
    "I think the team should start small and measure the results.",
    "The evidence points to a careful pilot before a full launch.",
    "We should weigh the cost against the value for our users.",
    "A simple plan with clear metrics is the safest choice.",
    "Let us gather feedback first and decide with data.",
)


@dataclass
class Knobs:
    """The server's behaviour, changeable while it runs."""

    latency_s: float = 0.0
    malformed_rate: float = 0.0
    error_rate: float = 0.0
    stall: bool = False
    seed: int = 0
    reply: str | None = None
    fail_first: int = 0
    fail_status: int = 500
    retry_after_s: float | None = None


KNOB_NAMES = frozenset(f.name for f in fields(Knobs))


class FakeLLM:
    """An OpenAI-compatible chat server on a loopback port, in a background thread.

    Use it as a context manager, or call `start()` and `stop()`. `base_url` is what LiteLLM takes as
    `api_base` (with a model such as `openai/fake`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        malformed_rate: float = 0.0,
        error_rate: float = 0.0,
        stall: bool = False,
        seed: int = 0,
        reply: str | None = None,
        responder: Responder | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._knobs = Knobs()
        self._rng = random.Random(seed)
        self._set_knobs(
            latency_s=latency_s,
            malformed_rate=malformed_rate,
            error_rate=error_rate,
            stall=stall,
            seed=seed,
            reply=reply,
        )
        self.responder = responder
        self._requests: list[dict[str, Any]] = []
        self._count = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeLLM:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self._host, self._requested_port), _Handler, fake=self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving. Stalled and idle keep-alive connections are closed, so this never hangs."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests read -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeLLM is not started; call start() or use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of every chat request body received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._count

    @property
    def knobs(self) -> Knobs:
        with self._lock:
            return Knobs(**asdict(self._knobs))

    def set(self, **knobs: Any) -> None:
        """Change knobs while serving, e.g. `fake.set(error_rate=1.0)`. `responder=` is accepted too."""
        if "responder" in knobs:
            self.responder = knobs.pop("responder")
        self._set_knobs(**knobs)

    def reset(self) -> None:
        """Forget recorded requests and zero the count."""
        with self._lock:
            self._requests.clear()
            self._count = 0

    # -- internals -------------------------------------------------------------------------------

    def _set_knobs(self, **knobs: Any) -> None:
        unknown = sorted(set(knobs) - KNOB_NAMES)
        if unknown:
            raise ValueError(
                f"unknown knob(s) {', '.join(unknown)}; choose from {', '.join(sorted(KNOB_NAMES))}"
            )
        for name in ("malformed_rate", "error_rate"):
            if name in knobs and not 0.0 <= float(knobs[name]) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {knobs[name]!r}")
        with self._lock:
            for name, value in knobs.items():
                setattr(self._knobs, name, value)
            if "seed" in knobs:
                self._rng.seed(knobs["seed"])

    # -- what the request handler calls -----------------------------------------------------------

    def record_request(self, body: dict[str, Any]) -> tuple[Knobs, float, float]:
        """Record a chat request; return the knobs in force and two rolls of the RNG.

        While the request is one of the first `fail_first`, the error roll is -1, below any rate.
        """
        with self._lock:
            self._requests.append(body)
            self._count += 1
            error_roll = -1.0 if self._count <= self._knobs.fail_first else self._rng.random()
            return Knobs(**asdict(self._knobs)), error_roll, self._rng.random()

    def wait_until_stopped(self, timeout: float | None = None) -> bool:
        """Block until the server stops or `timeout` passes; whether it stopped."""
        return self._stopping.wait(timeout)

    def stats(self) -> dict[str, Any]:
        """What `GET /_stats` answers: the request count, how many bodies are kept, the knobs."""
        with self._lock:
            return {
                "request_count": self._count,
                "recorded": len(self._requests),
                "knobs": asdict(self._knobs),
            }

    def track_connection(self, conn: socket.socket, *, add: bool) -> None:
        """Note an open (or closed) connection, so that `stop` can shut the ones still open."""
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class _Server(LoopbackHTTPServer):
    def __init__(self, address: tuple[str, int], handler: type[_Handler], *, fake: FakeLLM) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI SDK expects
    # Without this, headers and body leave in two writes and a keep-alive client waits ~40 ms per
    # call for the delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake.track_connection(self.connection, add=True)

    def finish(self) -> None:
        self.server.fake.track_connection(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._send_json(
                200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "fake"}]}
            )
        elif path == "/_stats":
            self._send_json(200, self.server.fake.stats())
        else:
            self._send_error(404, f"no route GET {path}", "not_found")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self._read_json()
        if body is None:
            return
        if path in ("/v1/chat/completions", "/chat/completions"):
            self._chat(body)
        elif path == "/_control":
            self._control(body)
        else:
            self._send_error(404, f"no route POST {path}", "not_found")

    def _chat(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        knobs, error_roll, malformed_roll = fake.record_request(body)
        if knobs.stall:
            fake.wait_until_stopped()
            self.close_connection = True
            return
        if knobs.latency_s > 0 and fake.wait_until_stopped(knobs.latency_s):
            self.close_connection = True
            return
        if error_roll < 0:
            self._send_failure(knobs.fail_status, knobs.retry_after_s)
            return
        if error_roll < knobs.error_rate:
            self._send_failure(knobs.fail_status, knobs.retry_after_s)
            return
        content = fake.responder(body) if fake.responder is not None else None
        if content is None:
            content = knobs.reply
        if content is None:
            malformed = malformed_roll < knobs.malformed_rate
            content = MALFORMED_REPLY if malformed else default_content(body, salt=knobs.seed)
        self._send_json(200, chat_completion(body, content))

    def _control(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        if body.pop("reset", False):
            fake.reset()
        try:
            fake.set(**{k: v for k, v in body.items() if k != "responder"})
        except (ValueError, TypeError) as exc:
            self._send_error(400, str(exc), "invalid_request_error")
            return
        self._send_json(200, fake.stats())

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            self._send_error(400, "request body is not JSON", "invalid_request_error")
            return None
        if not isinstance(value, dict):
            self._send_error(400, "request body must be a JSON object", "invalid_request_error")
            return None
        return value

    def _send_failure(self, status: int, retry_after_s: float | None) -> None:
        if status == 429:
            message, kind = "Rate limit reached for requests; please retry later.", "rate_limit_exceeded"
        else:
            message, kind = "The fake server had an error while processing your request.", "server_error"
        headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None else {}
        self._send_json(
            status, {"error": {"message": message, "type": kind, "param": None, "code": kind}}, headers
        )

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str, kind: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": kind}})


# -- replies -------------------------------------------------------------------------------------


def chat_completion(body: dict[str, Any], content: str) -> dict[str, Any]:
    """An OpenAI `chat.completion` object carrying `content`, with usage estimated at 4 chars a token."""
    prompt_chars = sum(len(_message_text(m)) for m in body.get("messages") or [])
    prompt_tokens = max(1, prompt_chars // 4)
    completion_tokens = max(1, len(content) // 4)
    return {
        "id": f"chatcmpl-fake-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model") or "fake"),
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def default_content(body: dict[str, Any], *, salt: int = 0) -> str:
    """A schema instance as JSON when the request carries a schema, else a short sentence."""
    seed = f"{salt}:{json.dumps(body.get('messages') or [], sort_keys=True, default=str)}"
    schema = request_schema(body)
    if schema is not None:
        return json.dumps(generate_instance(schema, seed=seed))
    return _SENTENCES[_pick(seed, "sentence", len(_SENTENCES))]


def request_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema in a request's `response_format`, in either the json_schema or json_object form."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        inner = fmt.get("json_schema") or {}
        schema = inner.get("schema") if isinstance(inner, dict) else None
    elif fmt.get("type") == "json_object":
        schema = fmt.get("schema")
        if schema is None:
            return {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    else:
        schema = None
    return schema if isinstance(schema, dict) else None


def generate_instance(schema: dict[str, Any], *, seed: str) -> Any:
    """A valid instance of `schema`, the same for the same seed.

    Covers what structured-output schemas use: objects (properties, required, additionalProperties),
    strings (enum, const, min/maxLength), integers and numbers (inclusive and exclusive bounds),
    booleans, null, arrays (items, min/maxItems; enum items are drawn without repeats), type lists,
    anyOf/oneOf/allOf, and local `$ref`s into `$defs`/`definitions`.
    """
    return _Generator(schema, seed).value(schema, "$")


def _pick(seed: str, path: str, n: int) -> int:
    """A deterministic index in range(n) for this seed and place in the schema."""
    digest = hashlib.sha256(f"{seed}|{path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def _number(value: Any) -> float | None:
    """A numeric schema bound, ignoring draft-4 boolean `exclusiveMinimum`/`exclusiveMaximum`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _kind(schema: dict[str, Any]) -> str:
    """The JSON type a schema asks for: the first non-null one of a list, else what its keys imply."""
    kind = schema.get("type")
    if isinstance(kind, list):
        return next((str(k) for k in kind if k != "null"), "null")
    if kind is None:
        return "object" if "properties" in schema else "array" if "items" in schema else "string"
    return str(kind)


class _Generator:
    def __init__(self, root: dict[str, Any], seed: str) -> None:
        self.root = root
        self.seed = seed

    def pick(self, path: str, n: int) -> int:
        return _pick(self.seed, path, n)

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            ref = str(schema["$ref"])
            if not ref.startswith("#"):
                raise ValueError(f"only local $refs are supported, got {ref!r}")
            target: Any = self.root
            for part in ref.lstrip("#").strip("/").split("/"):
                if part:
                    target = target[part.replace("~1", "/").replace("~0", "~")]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        return schema

    def value(self, schema: Any, path: str) -> Any:
        if schema is True or not isinstance(schema, dict):
            return self.string({}, path)
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            choices = list(schema["enum"])
            return choices[self.pick(path, len(choices))]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [s for s in schema[key] if self.resolve(s).get("type") != "null"] or schema[key]
                return self.value(options[0], path)
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged.update(self.resolve(part))
            return self.value(merged, path)
        generators: dict[str, Callable[[dict[str, Any], str], Any]] = {
            "object": self.object,
            "array": self.array,
            "integer": self.integer,
            "number": self.number,
            "boolean": self.boolean,
            "null": self.null,
        }
        generate = generators.get(_kind(schema)) or self.string
        return generate(schema, path)

    def boolean(self, schema: dict[str, Any], path: str) -> bool:
        return self.pick(path, 2) == 1

    def null(self, schema: dict[str, Any], path: str) -> None:
        return None

    def object(self, schema: dict[str, Any], path: str) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        return {name: self.value(sub, f"{path}.{name}") for name, sub in properties.items()}

    def array(self, schema: dict[str, Any], path: str) -> list[Any]:
        items = self.resolve(schema["items"]) if isinstance(schema.get("items"), dict) else {}
        low = int(schema.get("minItems", 1 if "maxItems" not in schema or schema["maxItems"] > 0 else 0))
        high = int(schema.get("maxItems", low + 2))
        if "enum" in items:  # draw without repeats: rankings and approvals list an option once
            pool = list(items["enum"])
            high = min(high, len(pool))
            count = low + self.pick(f"{path}#len", high - low + 1) if high >= low else high
            chosen = []
            for i in range(count):
                chosen.append(pool.pop(self.pick(f"{path}[{i}]", len(pool))))
            return chosen
        high = max(low, min(high, low + 2))
        count = low + self.pick(f"{path}#len", high - low + 1)
        values: list[Any] = []
        for i in range(count):
            value = self.value(items, f"{path}[{i}]")
            retry = 0
            while schema.get("uniqueItems") and value in values and retry < 8:
                retry += 1
                value = self.value(items, f"{path}[{i}]~{retry}")
            values.append(value)
        return values

    def integer(self, schema: dict[str, Any], path: str) -> int:
        low, high = self.bounds(schema, integer=True)
        return int(low) + self.pick(path, max(1, int(high) - int(low) + 1))

    def number(self, schema: dict[str, Any], path: str) -> float:
        low, high = self.bounds(schema, integer=False)
        fraction = self.pick(path, 1001) / 1000
        value = round(low + (high - low) * fraction, 3)
        return min(max(value, low), high)

    def bounds(self, schema: dict[str, Any], *, integer: bool) -> tuple[float, float]:
        step = 1.0 if integer else 1e-6
        low: float | None = _number(schema.get("minimum"))
        high: float | None = _number(schema.get("maximum"))
        exclusive_low = _number(schema.get("exclusiveMinimum"))
        if exclusive_low is not None:
            low = exclusive_low + step
        exclusive_high = _number(schema.get("exclusiveMaximum"))
        if exclusive_high is not None:
            high = exclusive_high - step
        if low is None:
            low = 0.0 if high is None else high - 10
        if high is None:
            high = low + 10
        if integer:
            return float(math.ceil(low)), float(math.floor(high))
        return low, high

    def string(self, schema: dict[str, Any], path: str) -> str:
        count = 1 + self.pick(f"{path}#words", 4)
        words = [_WORDS[self.pick(f"{path}#w{i}", len(_WORDS))] for i in range(count)]
        text = " ".join(words).capitalize()
        max_length = schema.get("maxLength")
        min_length = int(schema.get("minLength", 1 if max_length is None else min(1, int(max_length))))
        if max_length is not None:
            text = text[: int(max_length)].rstrip() or text[: int(max_length)]
        while len(text) < min_length:
            text += "x" * (min_length - len(text))
        return text


# -- standalone ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI-compatible chat API on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each reply")
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--stall", action="store_true", help="accept requests and never answer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeLLM(
        host=args.host,
        port=args.port,
        latency_s=args.latency,
        malformed_rate=args.malformed_rate,
        error_rate=args.error_rate,
        stall=args.stall,
        seed=args.seed,
    )
    fake.start()
    print(f"listening on {fake.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
