"""Bus benchmark: throughput and latency on Redis and NATS, for the raw `Bus` and for `Mailbox`.

What it measures, each on a private server this script starts (redis-server; nats-server -js):

- **Throughput** send -> handled -> acknowledged: 4 producer and 4 consumer processes, messages with
  a 300-byte content, sent in batches (`--batch`). Producer i sends to consumer i. Timed from the
  moment the producers are released until the last consumer has acknowledged its share.
  - `bus`: the raw backend: `publish_many` to a stream, `receive` with a consumer group, `ack`.
  - `mailbox`: the delivery layer: `Mailbox.send_many` (member check, priority lane) and
    `Mailbox.serve` (idempotency claims, triage, settle with done marks). `mailbox_over_bus` is its
    share of the raw throughput: the issue asks that it cost no more than a quarter (>= 0.75).
- **Latency** at a paced 1,000 msg/s: one producer process sends one message per millisecond (on an
  absolute schedule), one consumer process handles them; latency is from just before the send to
  the handler's call, on the same machine's clock. p50, p99 and max over `--latency-s` seconds.
- **Server ceiling**: `redis-benchmark -q -n 100000 -c 50 XADD bench '*' f <300-byte value>` on the
  same redis-server, and `nats bench` when the `nats` CLI is installed (it says so when it is not).

Goals (issue 5, section 9): >= 40,000 msg/s end to end on Redis; p99 <= 1 ms at 1,000 msg/s.

    .venv/bin/python bench/bus.py [--json] [--messages 200000] [--only redis|nats] [--layer bus|mailbox]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bus import AgentMessage, Bus  # noqa: E402
from tests.servers import NatsProcess, RedisProcess  # noqa: E402

PRODUCERS = 4
CONSUMERS = 4
CONTENT_BYTES = 300
#: A 300-byte content: one text field whose JSON object is exactly 300 bytes.
BODY = {"text": "x" * (CONTENT_BYTES - len('{"text":""}'))}
GOAL_MSG_PER_S = 40_000
GOAL_P99_MS = 1.0
LATENCY_RATE = 1000


def _connect(url: str) -> Bus:
    if url.startswith("nats://"):
        from bus import NatsBus

        return NatsBus(url)
    from bus import RedisBus

    return RedisBus(url)


def _message(ws: str, sender: str, to: str, content: dict[str, Any]) -> AgentMessage:
    return AgentMessage(
        from_agent=sender, to_agent=to, message_type="notification", workspace_id=ws, content=content
    )


# --- throughput: child processes ------------------------------------------------------------------


def _producer(cfg: dict[str, Any], index: int, ready: Any, go: Any) -> None:
    async def run() -> None:
        from bus import Mailbox

        bus = _connect(cfg["url"])
        ws, n, batch = cfg["workspace"], cfg["per_producer"], cfg["batch"]
        sender, target = f"prod{index}", f"agent{index % CONSUMERS}"
        box = Mailbox(bus, ws, sender)
        stream = f"rt:{{{ws}}}:raw:{index % CONSUMERS}"
        await bus.ping()
        if cfg["layer"] == "mailbox":
            await box.fetch_members()
        ready.set()
        go.wait()
        for start in range(0, n, batch):
            messages = [_message(ws, sender, target, BODY) for _ in range(min(batch, n - start))]
            if cfg["layer"] == "mailbox":
                await box.send_many(messages)
            else:
                await bus.publish_many([(stream, m) for m in messages])
        await bus.close()

    asyncio.run(run())


def _consumer(cfg: dict[str, Any], index: int, ready: Any, done: Any) -> None:
    async def run() -> None:
        from bus import DeliveryConfig, Mailbox

        bus = _connect(cfg["url"])
        ws, expect = cfg["workspace"], cfg["per_producer"]
        handled = 0

        async def handle(_: AgentMessage) -> None:
            nonlocal handled
            handled += 1

        if cfg["layer"] == "mailbox":
            box = Mailbox(bus, ws, f"agent{index}", consumer=f"c{index}", config=DeliveryConfig(block_ms=100))
            await box.register()
            ready.set()
            serving = asyncio.create_task(box.serve(handle, concurrency=cfg["concurrency"]))
            # Handled counts once settled (acknowledged), and nothing signals a settlement: poll.
            while box.stats.handled < expect:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
            finished = time.time()
            box.stop()
            await serving
        else:
            stream, group = f"rt:{{{ws}}}:raw:{index}", "g"
            await bus.ensure_group(stream, group)
            ready.set()
            acked = 0
            while acked < expect:
                received = await bus.receive([stream], group, f"c{index}", count=cfg["batch"], block_ms=100)
                for delivery in received.deliveries:
                    if delivery.message is not None:
                        await handle(delivery.message)
                if received.deliveries:
                    await bus.ack(stream, group, [d.entry_id for d in received.deliveries])
                    acked += len(received.deliveries)
            finished = time.time()
        done.put((index, finished, handled))
        await bus.close()

    asyncio.run(run())


def throughput(url: str, layer: str, messages: int, batch: int, concurrency: int) -> dict[str, Any]:
    """4 producers -> 4 consumers, each in its own process; msg/s from release to the last ack."""
    ctx = mp.get_context("spawn")
    per_producer = messages // PRODUCERS
    cfg = {
        "url": url,
        "workspace": f"bench-{uuid.uuid4().hex[:8]}",
        "layer": layer,
        "per_producer": per_producer,
        "batch": batch,
        "concurrency": concurrency,
    }
    go, done = ctx.Event(), ctx.Queue()
    ready = [ctx.Event() for _ in range(PRODUCERS + CONSUMERS)]
    consumers = [ctx.Process(target=_consumer, args=(cfg, i, ready[i], done)) for i in range(CONSUMERS)]
    for process in consumers:
        process.start()
    for event in ready[:CONSUMERS]:  # consumers register (mailbox) before producers look members up
        if not event.wait(60):
            raise RuntimeError("a consumer did not start")
    producers = [
        ctx.Process(target=_producer, args=(cfg, i, ready[CONSUMERS + i], go)) for i in range(PRODUCERS)
    ]
    for process in producers:
        process.start()
    for event in ready[CONSUMERS:]:
        if not event.wait(60):
            raise RuntimeError("a producer did not start")
    time.sleep(0.2)
    started = time.time()
    go.set()
    results = [done.get(timeout=600) for _ in consumers]
    for process in [*producers, *consumers]:
        process.join(60)
    seconds = max(finished for _, finished, _ in results) - started
    total = per_producer * PRODUCERS
    return {
        "messages": total,
        "handled": sum(n for _, _, n in results),
        "seconds": round(seconds, 3),
        "msg_per_s": round(total / seconds),
    }


# --- latency --------------------------------------------------------------------------------------


def _latency_consumer(cfg: dict[str, Any], ready: Any, out: Any) -> None:
    async def run() -> None:
        from bus import DeliveryConfig, Mailbox

        bus = _connect(cfg["url"])
        ws, expect = cfg["workspace"], cfg["count"]
        samples: list[float] = []
        all_in = asyncio.Event()

        async def handle(message: AgentMessage) -> None:
            samples.append(time.time() - float(message.content["t"]))
            if len(samples) >= expect:
                all_in.set()

        if cfg["layer"] == "mailbox":
            box = Mailbox(bus, ws, "dst", consumer="c", config=DeliveryConfig(block_ms=1000))
            await box.register()
            ready.set()
            serving = asyncio.create_task(box.serve(handle))
            await all_in.wait()
            box.stop()
            await serving
        else:
            stream, group = f"rt:{{{ws}}}:raw:lat", "g"
            await bus.ensure_group(stream, group)
            ready.set()
            while len(samples) < expect:
                received = await bus.receive([stream], group, "c", count=100, block_ms=1000)
                for delivery in received.deliveries:
                    if delivery.message is not None:
                        await handle(delivery.message)
                if received.deliveries:
                    await bus.ack(stream, group, [d.entry_id for d in received.deliveries])
        out.put(samples)
        await bus.close()

    asyncio.run(run())


def _latency_producer(cfg: dict[str, Any], go: Any) -> None:
    async def run() -> None:
        from bus import Mailbox

        bus = _connect(cfg["url"])
        ws = cfg["workspace"]
        box = Mailbox(bus, ws, "src")
        stream = f"rt:{{{ws}}}:raw:lat"
        await bus.ping()
        if cfg["layer"] == "mailbox":
            await box.fetch_members()
        go.wait()
        start = time.perf_counter()
        for i in range(cfg["count"]):
            delay = start + i / LATENCY_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            message = _message(ws, "src", "dst", {"t": repr(time.time()), **BODY})
            if cfg["layer"] == "mailbox":
                await box.send(message)
            else:
                await bus.publish(stream, message)
        await bus.close()

    asyncio.run(run())


def latency(url: str, layer: str, seconds: float) -> dict[str, Any]:
    """One producer paced at 1,000 msg/s, one consumer, separate processes; send -> handler call."""
    ctx = mp.get_context("spawn")
    count = int(seconds * LATENCY_RATE)
    warm = min(500, count // 10)  # the first messages pay for connections and caches: left out
    cfg = {"url": url, "workspace": f"lat-{uuid.uuid4().hex[:8]}", "layer": layer, "count": count}
    ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=_latency_consumer, args=(cfg, ready, out))
    consumer.start()
    if not ready.wait(60):
        raise RuntimeError("the latency consumer did not start")
    producer = ctx.Process(target=_latency_producer, args=(cfg, go))
    producer.start()
    time.sleep(0.5)
    go.set()
    samples = sorted(s * 1000 for s in out.get(timeout=seconds + 120)[warm:])
    producer.join(60)
    consumer.join(60)
    return {
        "rate_per_s": LATENCY_RATE,
        "samples": len(samples),
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
        "max_ms": round(samples[-1], 3),
    }


# --- CPU per message, and where it goes -----------------------------------------------------------


def _redis_cpu_s(url: str) -> float:
    """The redis-server's CPU seconds so far (INFO cpu), through a plain client."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def _cost(url: str, layer: str, messages: int, batch: int) -> dict[str, Any]:
    """One producer, then one consumer, alone in this process: CPU microseconds per message."""
    from bus import DeliveryConfig, Mailbox

    bus = _connect(url)
    ws = f"cost-{uuid.uuid4().hex[:8]}"
    stream = f"rt:{{{ws}}}:raw:0"
    consumer = Mailbox(bus, ws, "dst", consumer="c", config=DeliveryConfig(block_ms=50, batch=batch))
    await consumer.register()
    await bus.ensure_group(stream, "g")
    producer = Mailbox(bus, ws, "src")
    await producer.fetch_members()
    result: dict[str, Any] = {}

    async def produce() -> None:
        for start in range(0, messages, batch):
            sent = [_message(ws, "src", "dst", BODY) for _ in range(min(batch, messages - start))]
            if layer == "mailbox":
                await producer.send_many(sent)
            else:
                await bus.publish_many([(stream, m) for m in sent])

    async def consume() -> None:
        handled = 0

        async def handle(_: AgentMessage) -> None:
            nonlocal handled
            handled += 1

        if layer == "mailbox":
            await consumer.serve(handle, idle_stop_ms=50)
            return
        while handled < messages:
            received = await bus.receive([stream], "g", "c", count=batch, block_ms=50)
            for delivery in received.deliveries:
                if delivery.message is not None:
                    await handle(delivery.message)
            if received.deliveries:
                await bus.ack(stream, "g", [d.entry_id for d in received.deliveries])

    for side, work in (("producer", produce), ("consumer", consume)):
        cpu, server, wall = time.process_time(), _redis_cpu_s(url), time.perf_counter()
        await work()
        cpu, server = time.process_time() - cpu, _redis_cpu_s(url) - server
        result[side] = {
            "python_us": round(cpu / messages * 1e6, 1),
            "redis_us": round(server / messages * 1e6, 1),
            "msg_per_s_alone": round(messages / (time.perf_counter() - wall)),
        }
    await bus.close()
    total_us = sum(side["python_us"] + side["redis_us"] for side in result.values())
    result["total_cpu_us"] = round(total_us, 1)
    # Every message costs this much CPU somewhere; with all cores busy on nothing else, at best:
    result["cpu_bound_ceiling_msg_per_s"] = round((os.cpu_count() or 1) * 1e6 / total_us)
    return result


def cost(url: str, layer: str, messages: int, batch: int) -> dict[str, Any]:
    return asyncio.run(_cost(url, layer, messages, batch))


def profile(url: str, layer: str, messages: int, batch: int, top: int = 12) -> dict[str, Any]:
    """`cost` run under py-spy: the functions where a producer and a consumer spend their own time."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {"available": False, "note": "py-spy is not installed (pip install py-spy)"}
    with tempfile.TemporaryDirectory(prefix="bench-spy-") as tmp:
        out = Path(tmp) / "stacks.txt"
        command = [spy, "record", "--format", "raw", "-r", "250", "-o", str(out), "--", sys.executable]
        command += [
            str(Path(__file__).resolve()),
            "--cost-only",
            layer,
            "--url",
            url,
            "--messages",
            str(messages),
        ]
        subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
        lines = out.read_text().splitlines()
    report: dict[str, Any] = {"available": True}
    for side, marker in (("producer", "produce"), ("consumer", "consume")):
        own: dict[str, int] = {}
        total = 0
        for line in lines:
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if not any(f"<locals>.{marker} (" in frame for frame in frames):
                continue
            total += int(count)
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
        report[side] = [f"{100 * n / max(total, 1):4.1f}% {frame}" for frame, n in ranked]
    return report


# --- server ceilings ------------------------------------------------------------------------------


def redis_ceiling(port: int) -> dict[str, Any]:
    value = "v" * CONTENT_BYTES
    command = [
        "redis-benchmark",
        "-p",
        str(port),
        "-q",
        "-n",
        "100000",
        "-c",
        "50",
        "XADD",
        "bench",
        "*",
        "f",
        value,
    ]
    shown = f"redis-benchmark -q -n 100000 -c 50 XADD bench '*' f <{CONTENT_BYTES}-byte value>"
    if shutil.which("redis-benchmark") is None:
        return {"command": shown, "available": False, "note": "redis-benchmark is not installed"}
    text = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    last = text.strip().splitlines()[-1] if text.strip() else ""
    rate = re.search(r"([\d.]+) requests per second", last)
    p50 = re.search(r"p50=([\d.]+) msec", last)
    return {
        "command": shown,
        "available": True,
        "requests_per_s": round(float(rate.group(1))) if rate else None,
        "p50_ms": float(p50.group(1)) if p50 else None,
        "raw": last.split(":")[-1].strip() if last else text.strip(),
    }


def nats_ceiling(url: str) -> dict[str, Any]:
    shown = f"nats bench bench --js --pub 4 --sub 4 --msgs 100000 --size {CONTENT_BYTES}"
    if shutil.which("nats") is None:
        return {
            "command": shown,
            "available": False,
            "note": "the nats CLI is not installed; no server ceiling",
        }
    command = ["nats", "-s", url, "bench", "bench", "--js", "--pub", "4", "--sub", "4", "--msgs", "100000"]
    command += ["--size", str(CONTENT_BYTES), "--no-progress"]
    text = subprocess.run(command, capture_output=True, text=True, timeout=600).stdout
    return {
        "command": shown,
        "available": True,
        "raw": " | ".join(line.strip() for line in text.splitlines()[-4:]),
    }


# --- running it all -------------------------------------------------------------------------------


@contextmanager
def server(kind: str) -> Iterator[tuple[str, int]]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        process = RedisProcess(Path(tmp)) if kind == "redis" else NatsProcess(Path(tmp))
        process.start()
        try:
            yield process.url, process.port
        finally:
            process.stop()


def run_backend(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    layers = [args.layer] if args.layer else ["bus", "mailbox"]
    messages = args.messages if kind == "redis" else args.nats_messages
    result: dict[str, Any] = {"throughput": {}, "latency": {}}
    with server(kind) as (url, port):
        result["server_ceiling"] = redis_ceiling(port) if kind == "redis" else nats_ceiling(url)
        for layer in layers:
            throughput(
                url, layer, max(PRODUCERS * args.batch, messages // 10), args.batch, args.concurrency
            )  # warm-up
            runs = [
                throughput(url, layer, messages, args.batch, args.concurrency) for _ in range(args.repeat)
            ]
            best = max(runs, key=lambda r: r["msg_per_s"])
            result["throughput"][layer] = {**best, "runs_msg_per_s": [r["msg_per_s"] for r in runs]}
            print(f"{kind} {layer} throughput: {best['msg_per_s']:,} msg/s", file=sys.stderr)
            result["latency"][layer] = latency(url, layer, args.latency_s)
            lat = result["latency"][layer]
            print(f"{kind} {layer} latency: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms", file=sys.stderr)
        if kind == "redis":
            result["cpu_per_message"] = {
                layer: cost(url, layer, args.cost_messages, args.batch) for layer in layers
            }
            if args.profile:
                result["profile"] = {
                    layer: profile(url, layer, args.cost_messages, args.batch) for layer in layers
                }
    if "bus" in result["throughput"] and "mailbox" in result["throughput"]:
        share = result["throughput"]["mailbox"]["msg_per_s"] / result["throughput"]["bus"]["msg_per_s"]
        result["mailbox_over_bus"] = round(share, 3)
    return result


def main(args: argparse.Namespace) -> dict[str, Any]:
    entry = _message("w", "a", "b", BODY).to_fields()
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "setup": {
            "producers": PRODUCERS,
            "consumers": CONSUMERS,
            "content_bytes": CONTENT_BYTES,
            "entry_bytes": sum(len(k) + len(v.encode()) for k, v in entry.items()),
            "batch": args.batch,
            "consumer_concurrency": args.concurrency,
            "messages": {"redis": args.messages, "nats": args.nats_messages},
        },
    }
    kinds = [args.only] if args.only else ["redis", "nats"]
    for kind in kinds:
        report[kind] = run_backend(kind, args)
    redis = report.get("redis", {})
    goals: dict[str, Any] = {}
    if "mailbox" in redis.get("throughput", {}):
        goals["redis_end_to_end_msg_per_s"] = {
            "goal": GOAL_MSG_PER_S,
            "measured": redis["throughput"]["mailbox"]["msg_per_s"],
            "met": redis["throughput"]["mailbox"]["msg_per_s"] >= GOAL_MSG_PER_S,
        }
        goals["redis_p99_ms_at_1000_per_s"] = {
            "goal": GOAL_P99_MS,
            "measured": redis["latency"]["mailbox"]["p99_ms"],
            "met": redis["latency"]["mailbox"]["p99_ms"] <= GOAL_P99_MS,
        }
    if "mailbox_over_bus" in redis:
        goals["mailbox_costs_at_most_a_quarter"] = {
            "goal": 0.75,
            "measured": redis["mailbox_over_bus"],
            "met": redis["mailbox_over_bus"] >= 0.75,
        }
    report["goals"] = goals
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--messages", type=int, default=200_000, help="messages per Redis throughput run")
    parser.add_argument("--nats-messages", type=int, default=40_000, help="messages per NATS throughput run")
    parser.add_argument("--batch", type=int, default=100, help="messages per send_many / publish_many")
    parser.add_argument("--concurrency", type=int, default=1, help="handlers at once per consumer")
    parser.add_argument("--repeat", type=int, default=2, help="throughput runs per layer (best is kept)")
    parser.add_argument("--latency-s", type=float, default=5.0, help="seconds of paced sending")
    parser.add_argument("--only", choices=["redis", "nats"])
    parser.add_argument("--layer", choices=["bus", "mailbox"])
    parser.add_argument("--cost-messages", type=int, default=50_000, help="messages per CPU-cost run")
    parser.add_argument("--profile", action="store_true", help="also profile the CPU-cost runs with py-spy")
    parser.add_argument("--cost-only", choices=["bus", "mailbox"], help=argparse.SUPPRESS)  # under py-spy
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cost_only:
        print(json.dumps(cost(args.url, args.cost_only, args.messages, args.batch)))
        sys.exit(0)
    report = main(args)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
