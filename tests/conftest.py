"""Fixtures shared by the whole suite (the fake LLM, and a real runtime's settings for the bot and the
chat adapters: SQLite in tmp, a private redis-server, LiteLLM to the fake LLM), and what `make fast`
leaves out.

`make fast` runs `pytest --fast`: every test not marked `server` or `slow`, with no redis-server,
nats-server or PostgreSQL, no subprocess and no LiteLLM. A test is marked `server`
- by itself, when it uses one of `SERVER_FIXTURES` (directly or through another fixture), or is marked
  `postgres` or `smollm2`;
- by its parameters, when one of them names a server backend (`SERVER_PARAMS`), as the `bus` fixture
  of tests/bus does: its "redis" and "nats" variants are `server`, its "memory" one is not;
- by hand (`pytestmark = pytest.mark.server`), when it starts a server or a process in its body.

Under `--fast` a test that starts a process or imports LiteLLM anyway fails and says so, so the split
stays true as tests are added.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.fakes.fake_llm import FakeLLM
from tests.servers import RedisProcess

if TYPE_CHECKING:
    from bot import Settings

#: Fixtures that start or reach a server process, or exist to be called through LiteLLM.
SERVER_FIXTURES = frozenset(
    {
        "redis_url",  # tests/bus: a private redis-server for the session
        "nats_url",  # tests/bus: a nats-server for the session
        "redis_proc",  # tests/bot: a redis-server for the session
        "fake_llm",  # the fake OpenAI-compatible server, which tests reach through LiteLLM
    }
)
#: Parameter values that name a server backend (fixtures that reach it with `getfixturevalue`).
SERVER_PARAMS = frozenset({"redis", "nats", "postgres"})
#: Markers that imply `server`.
SERVER_MARKERS = ("postgres", "smollm2")
#: Audit events that start a process (see the `sys.audit` events table).
_PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.exec", "os.fork", "os.forkpty"}
)
#: Packages a fast test must not import: each costs seconds, and means a model client is in play.
_HEAVY_IMPORTS = ("litellm", "llama_cpp")


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A started fake OpenAI-compatible server; point LiteLLM at `fake_llm.base_url` with `openai/fake`."""
    with FakeLLM() as fake:
        yield fake


@pytest.fixture(scope="session")
def redis_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server for the whole test session, shared by every runtime `settings_for` makes."""
    proc = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield proc
    proc.stop()


@pytest.fixture
def settings_for(tmp_path: Path, fake_llm: FakeLLM, redis_proc: RedisProcess) -> Callable[..., Settings]:
    """Makes settings for a real runtime; each call gets a workspace of its own, keywords override."""
    # Imported here, not at the top, so that tests of the pure packages do not load the whole stack.
    from bot import Settings

    counter = iter(range(1_000_000))

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "bus_url": redis_proc.url,
            "model": "openai/fake",
            "api_base": fake_llm.base_url,
            "api_key": "sk-fake",
            "workspace": f"t{next(counter)}-{tmp_path.name[-12:]}",
            "turn_timeout_s": 20.0,
        }
        base.update(overrides)
        return Settings(**base)

    return make


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="run only the tests marked neither `server` nor `slow`, and fail any that starts a process "
        "or imports LiteLLM",
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` reads the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_a_server(item):
            item.add_marker(pytest.mark.server)
    # The embedded-model session takes minutes; started first, it runs beside the rest under xdist
    # instead of after it. The sort is stable, so every worker collects the same order.
    items.sort(key=lambda item: item.get_closest_marker("smollm2") is None)
    if not config.getoption("--fast"):
        return
    keep = [i for i in items if not (i.get_closest_marker("server") or i.get_closest_marker("slow"))]
    left_out = [i for i in items if i not in keep]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = keep


def _needs_a_server(item: pytest.Item) -> bool:
    if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    if any(item.get_closest_marker(name) for name in SERVER_MARKERS):
        return True
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(isinstance(value, str) and value in SERVER_PARAMS for value in params)


class _Guard:
    """What a fast test did that it must not: start a process, import LiteLLM."""

    installed = False
    active = False
    violations: list[str] = []  # noqa: RUF012 - one guard per process, by design

    @classmethod
    def audit(cls, event: str, args: tuple[Any, ...]) -> None:
        if not cls.active:
            return
        if event in _PROCESS_EVENTS:
            what = f"started a process ({event}: {args[0]!r})"
        elif event == "import" and str(args[0]).partition(".")[0] in _HEAVY_IMPORTS:
            what = f"imported {args[0]}"
        else:
            return
        cls.violations.append(what)
        raise ServerFreeViolation(
            f"this test {what}, which `make fast` does not allow; mark it `server` "
            "(or `slow`), or use a fixture in SERVER_FIXTURES (tests/conftest.py)"
        )


class ServerFreeViolation(RuntimeError):
    """A test run by `make fast` started a process or imported LiteLLM."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    if not item.config.getoption("--fast"):
        return (yield)
    if not _Guard.installed:
        sys.addaudithook(_Guard.audit)  # audit hooks cannot be removed; `active` switches it
        _Guard.installed = True
    _Guard.active, _Guard.violations = True, []
    try:
        return (yield)
    finally:
        _Guard.active = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Fail a fast test that caught the guard's error and went on as if nothing happened."""
    report = yield
    if call.when == "call" and _Guard.violations and report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"ServerFreeViolation (caught by the test): this test {'; '.join(_Guard.violations)}"
        )
    return report
