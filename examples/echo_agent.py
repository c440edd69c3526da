"""An agent in ten lines: it answers every task with the task itself.

Run it with `python examples/echo_agent.py [bus URL] [workspace]`; by default it joins the workspace
"default" on redis://localhost:6379/0. Another agent then asks it with
`await ContainerAgent(url, "me").collaborate_with("echo", {"text": "hi"})`.
"""

import asyncio
import sys
from typing import Any

from bus import AgentMessage, ContainerAgent

url = sys.argv[1] if len(sys.argv) > 1 else "redis://localhost:6379/0"
workspace = sys.argv[2] if len(sys.argv) > 2 else "default"
agent = ContainerAgent(url, "echo", workspace=workspace, capabilities=["echo"])


@agent.on_task_assigned
async def echo(task: dict[str, Any], message: AgentMessage) -> dict[str, Any]:
    return {"echo": task, "to": message.from_agent}


if __name__ == "__main__":
    asyncio.run(agent.run())  # until Ctrl-C or SIGTERM
