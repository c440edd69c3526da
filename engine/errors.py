"""RoundTable's exception tree, drawn in one place.

    RoundTableError
    ├── ConfigError              a setting or installation is wrong; fix the configuration
    │   └── ModelNotConfigured   no LLM is configured and the embedded one is not installed
    ├── BadRequest               user input is invalid; the message quotes the value and the choices
    │   ├── InvalidArgument      an argument of a call is invalid; names the parameter apart, for edges
    │   ├── UnknownPersona
    │   ├── BallotDocumentError  a tally document is malformed
    │   ├── UnknownRecipient     a bus message names an agent that is not a member of its workspace
    │   └── MessageExpired       a bus message's ttl passed before it was sent
    ├── SessionNotFound          no stored session has that id
    ├── RuleMismatch             stored ballots cannot be counted under the requested rule
    ├── BudgetExhausted          the session's token or dollar budget is spent
    ├── AgentUnavailable         one agent failed or timed out (the engine degrades, it does not stop)
    │   ├── RequestTimedOut      a bus request got no response within its timeout
    │   └── RequestFailed        a bus request was answered with a failure (the responder's handler raised)
    ├── LLMError                 the model provider failed (HTTP error, connection refused, timeout)
    │   └── LLMOutputInvalid     the model replied, but not with the structured output asked for
    ├── CommandRefused           the sender's role may not send commands in this workspace (audited)
    ├── BusUnavailable           the collaboration bus (Redis or NATS) cannot be reached
    └── StoreUnavailable         the session store (database) cannot be reached

Control-flow signals, such as a repair retry, are not errors and live outside this tree.
"""

from __future__ import annotations

from collections.abc import Mapping


class RoundTableError(Exception):
    """Root of every error RoundTable raises on purpose."""


class ConfigError(RoundTableError):
    """The configuration or installation is wrong; nothing will work until it is fixed."""


class ModelNotConfigured(ConfigError):
    """No model is configured, and the embedded local model is not installed."""


class BadRequest(RoundTableError):
    """User input is invalid. The message names the value and the valid choices."""


class InvalidArgument(BadRequest):
    """An argument of a call is invalid, or two arguments clash.

    The parameters' names are kept apart from the rest of the sentence, so that an edge can say them
    its own way, once: `limit must be 1 or more, got 0` here is `--limit must be 1 or more, got 0` on
    the command line (`worded`), and no layer below the edge needs to know what its flags are called.

    Args:
        parameters: the parameters at fault, as the function names them (two for a clash).
        problem: the rest of the sentence after their names, e.g. `must be 1 or more, got 0`.
    """

    def __init__(self, *parameters: str, problem: str) -> None:
        self.parameters = parameters
        self.problem = problem
        super().__init__(self.worded({}))

    def worded(self, names: Mapping[str, str]) -> str:
        """The message with each parameter called what `names` calls it (by its own name if absent)."""
        subject = " and ".join(names.get(p, p) for p in self.parameters)
        return f"{subject} {self.problem}"


class UnknownPersona(BadRequest):
    """A team names a persona id that is not defined."""


class BallotDocumentError(BadRequest):
    """A tally document is malformed (not JSON, no candidates, unknown rule...)."""


class UnknownRecipient(BadRequest):
    """A bus message is addressed to an agent that is not registered in its workspace."""


class MessageExpired(BadRequest):
    """A bus message's ttl had already passed when it was sent, so it would never be delivered."""


class SessionNotFound(RoundTableError):
    """No stored session has the given id."""


class RuleMismatch(RoundTableError):
    """Stored ballots do not carry the field another voting rule needs."""


class BudgetExhausted(RoundTableError):
    """The session's token or dollar budget is spent."""


class AgentUnavailable(RoundTableError):
    """An agent failed or did not answer in time."""


class RequestTimedOut(AgentUnavailable):
    """A request on the bus got no correlated response within its timeout; a later one is dropped."""


class RequestFailed(AgentUnavailable):
    """A request on the bus was answered with `status=failed`; the message carries the responder's error."""

    def __init__(self, message: str, *, error: str = "") -> None:
        super().__init__(message)
        #: The responder's own account of the failure (the response's `content.error`), without our framing.
        self.error = error


class LLMError(RoundTableError):
    """The model provider failed: HTTP error, refused connection or timeout.

    `status` is the provider's HTTP status, when there was one; `retries` counts the requests that
    failed and were retried before this last one.
    """

    def __init__(self, message: str, *, status: int | None = None, retries: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.retries = retries


class LLMOutputInvalid(LLMError):
    """The model answered, but its reply is not the structured output that was asked for."""

    def __init__(self, message: str, *, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class CommandRefused(RoundTableError):
    """A `command` message came from a sender whose role may not send commands; it was audited."""


class BusUnavailable(RoundTableError):
    """The collaboration bus cannot be reached."""


class StoreUnavailable(RoundTableError):
    """The session store cannot be reached."""
