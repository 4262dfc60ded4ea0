"""LLM clients for the agent: one message and tool-call representation, spoken to two protocols.

- OpenAI-compatible chat completions with tool calling, through the official `openai`
  SDK. That protocol is served by OpenAI itself and by vLLM, SGLang, Ollama, the
  llama.cpp server and OpenRouter, so one client covers them all.
- Anthropic messages with tool use, through the official `anthropic` SDK.

The agent loop only sees `Message`, `ToolCall`, `ToolSpec` and `LLMResponse`; each
client converts them to its protocol and back.

Retries and timeouts are the SDKs' own: both retry connection errors and HTTP 408, 409,
429 and 5xx with exponential backoff (0.5 s doubling, capped at 8 s, with jitter, and a
server's `Retry-After` honoured up to a limit), `max_retries` times; `timeout_s` bounds
each HTTP attempt. After the last retry the SDK error becomes one `LLMError` line.

Selecting models: `--llm openai:MODEL`, `--llm anthropic:MODEL`, or a provider named
in the config file (`--llm local:Qwen/Qwen2.5-Coder-32B-Instruct`). Several models with
weights, `openai:a=0.7,anthropic:b=0.3` or one flag per model (`parse_llm_specs`); each
agent step draws one model by weight.

Endpoints and keys come from the SDKs' environment variables (OPENAI_BASE_URL,
OPENAI_API_KEY, ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY) or from the config file
(`solforge.agent.config`).
"""

from __future__ import annotations

import enum
import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from solforge.agent.config import LLMConfig, ProviderConfig, load_llm_config
from solforge.agent.pricing import Price
from solforge.spec import SpecError


class LLMError(Exception):
    """An LLM call failed after the SDK's retries (HTTP error, connection, timeout, bad reply)."""


# -- the internal representation ---------------------------------------------------------


class Role(str, enum.Enum):
    user = "user"
    assistant = "assistant"
    tool = "tool"  # a tool's result, answering one ToolCall


class StopReason(str, enum.Enum):
    """Why the model stopped: it finished, it wants tools run, or it hit the output limit."""

    end = "end"
    tool_use = "tool_use"
    max_tokens = "max_tokens"
    other = "other"


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: a name, what it does, and its arguments as a JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]  # a JSON-schema object: {"type": "object", "properties": ..., "required": ...}


@dataclass(frozen=True)
class ToolCall:
    """One tool call of the model. `arguments` is None when the model's arguments were not
    a JSON object; `error` then says why, and `raw_arguments` holds what it sent."""

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = ""
    error: str | None = None


@dataclass(frozen=True)
class Message:
    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()  # assistant messages only
    tool_call_id: str | None = None  # tool messages only: the call this answers
    is_error: bool = False  # tool messages only


@dataclass(frozen=True)
class Usage:
    """Tokens of one call, as the server reports them (0 when it reports none)."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class LLMResponse:
    message: Message  # role assistant
    usage: Usage
    stop_reason: StopReason
    model: str  # as the server names it


class LLMClient(Protocol):
    """A chat model with tool calling. `complete` raises LLMError when the call fails."""

    provider: str  # the provider name as selected: "openai", "anthropic", or one from the config file
    model: str

    def complete(
        self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec], max_output_tokens: int
    ) -> LLMResponse: ...


def parse_arguments(raw: str) -> tuple[dict[str, Any] | None, str | None]:
    """A tool call's JSON arguments as a dict, or (None, why) when they are not a JSON object."""
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"arguments are not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, None


# -- OpenAI-compatible chat completions --------------------------------------------------


def to_openai_messages(system: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Chat-completions messages: the system prompt first, tool results as `tool` messages.
    A call whose arguments did not parse is sent back with `{}` (some servers re-parse
    the history); its tool result carries what went wrong."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for m in messages:
        if m.role is Role.tool:
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.text})
        elif m.role is Role.assistant:
            # content may be null beside tool calls; without them some servers want a string
            msg: dict[str, Any] = {"role": "assistant", "content": m.text or (None if m.tool_calls else "(no reply)")}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": c.raw_arguments if c.error is None else "{}"}}
                    for c in m.tool_calls
                ]  # fmt: skip
            out.append(msg)
        else:
            out.append({"role": "user", "content": m.text})
    return out


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]  # fmt: skip


_OPENAI_STOP = {"stop": StopReason.end, "tool_calls": StopReason.tool_use, "function_call": StopReason.tool_use,
                "length": StopReason.max_tokens}  # fmt: skip


def from_openai_response(resp: Any, turn: int = 0) -> LLMResponse:
    """Our LLMResponse from a `ChatCompletion`. Raises LLMError when it has no choice."""
    if not getattr(resp, "choices", None):
        raise LLMError("the server's reply has no choices")
    choice = resp.choices[0]
    msg = choice.message
    calls = []
    for i, tc in enumerate(getattr(msg, "tool_calls", None) or []):
        fn = getattr(tc, "function", None)
        if fn is None:
            continue  # a non-function (custom) tool call: we offer none
        raw = fn.arguments or ""
        args, error = parse_arguments(raw)
        calls.append(ToolCall(id=tc.id or f"call_{turn}_{i}", name=fn.name or "", arguments=args,
                              raw_arguments=raw, error=error))  # fmt: skip
    usage = getattr(resp, "usage", None)
    stop = _OPENAI_STOP.get(choice.finish_reason or "", StopReason.other)
    if calls and stop is StopReason.other:
        stop = StopReason.tool_use
    return LLMResponse(
        message=Message(Role.assistant, text=msg.content or "", tool_calls=tuple(calls)),
        usage=Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)),
        stop_reason=stop,
        model=getattr(resp, "model", "") or "",
    )


class OpenAIChatClient:
    """Chat completions with tool calling through the `openai` SDK.

    `base_url` / `api_key` None: the SDK reads OPENAI_BASE_URL / OPENAI_API_KEY.
    `max_tokens_field` is the request field that caps the output: OpenAI's current
    `max_completion_tokens`, or `max_tokens` for servers that know only the old name.
    Raises SpecError when no API key is found (local servers take any string).
    """

    def __init__(self, model: str, *, provider: str = "openai", base_url: str | None = None,
                 api_key: str | None = None, timeout_s: float = 300.0, max_retries: int = 4,
                 max_tokens_field: str = "max_completion_tokens") -> None:  # fmt: skip
        import openai

        self.provider, self.model, self.max_tokens_field = provider, model, max_tokens_field
        try:
            self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s,
                                         max_retries=max_retries)  # fmt: skip
        except openai.OpenAIError as exc:
            raise SpecError(f"--llm {provider}:{model}: {exc} (or api_key in [providers.{provider}] of the "
                            "LLM config file)") from None  # fmt: skip
        self._turn = 0

    def complete(self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec],
                 max_output_tokens: int) -> LLMResponse:  # fmt: skip
        import openai

        self._turn += 1
        kwargs: dict[str, Any] = {self.max_tokens_field: max_output_tokens}
        if tools:
            kwargs["tools"] = to_openai_tools(tools)
        try:
            resp = self._client.chat.completions.create(
                model=self.model, messages=to_openai_messages(system, messages), **kwargs
            )
        except openai.APIStatusError as exc:
            raise LLMError(f"{self.provider}:{self.model}: HTTP {exc.status_code}: {_one_line(exc.message)}") from None
        except openai.APIError as exc:  # connection errors and timeouts, after the retries
            raise LLMError(f"{self.provider}:{self.model}: {type(exc).__name__}: {_one_line(str(exc))}") from None
        return from_openai_response(resp, self._turn)


# -- Anthropic messages ------------------------------------------------------------------


def to_anthropic_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages API turns: tool results become `tool_result` blocks of a user turn, and
    consecutive turns of one role are merged (the API wants them alternating)."""
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for m in messages:
        if m.role is Role.tool:
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.text}
            if m.is_error:
                block["is_error"] = True
            add("user", [block])
        elif m.role is Role.assistant:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m.text}] if m.text else []
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments or {}}
                       for c in m.tool_calls]  # fmt: skip
            add("assistant", blocks or [{"type": "text", "text": "(no reply)"}])
        else:
            add("user", [{"type": "text", "text": m.text}])
    return out


def to_anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]


_ANTHROPIC_STOP = {"end_turn": StopReason.end, "stop_sequence": StopReason.end, "tool_use": StopReason.tool_use,
                   "max_tokens": StopReason.max_tokens}  # fmt: skip


def from_anthropic_response(resp: Any) -> LLMResponse:
    """Our LLMResponse from an Anthropic `Message`. Input tokens include prompt-cache reads
    and writes (priced at the input rate: an approximation; solforge sets no cache points)."""
    texts, calls = [], []
    for block in resp.content or []:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            args = block.input if isinstance(block.input, dict) else None
            error = None if args is not None else "arguments must be a JSON object"
            calls.append(ToolCall(id=block.id, name=block.name, arguments=args,
                                  raw_arguments=json.dumps(block.input), error=error))  # fmt: skip
    u = resp.usage
    input_tokens = sum(int(getattr(u, k, 0) or 0)
                       for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))  # fmt: skip
    return LLMResponse(
        message=Message(Role.assistant, text="\n".join(texts), tool_calls=tuple(calls)),
        usage=Usage(input_tokens, int(getattr(u, "output_tokens", 0) or 0)),
        stop_reason=_ANTHROPIC_STOP.get(resp.stop_reason or "", StopReason.other),
        model=resp.model or "",
    )


class AnthropicClient:
    """Messages with tool use through the `anthropic` SDK.

    `base_url` / `api_key` None: the SDK reads ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY
    (and its other credential sources). A missing key fails at the first call, as an
    LLMError carrying the SDK's message.
    """

    def __init__(self, model: str, *, provider: str = "anthropic", base_url: str | None = None,
                 api_key: str | None = None, timeout_s: float = 300.0, max_retries: int = 4) -> None:  # fmt: skip
        import anthropic

        self.provider, self.model = provider, model
        self._client = anthropic.Anthropic(base_url=base_url, api_key=api_key, timeout=timeout_s,
                                           max_retries=max_retries)  # fmt: skip

    def complete(self, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec],
                 max_output_tokens: int) -> LLMResponse:  # fmt: skip
        import anthropic

        kwargs: dict[str, Any] = {"tools": to_anthropic_tools(tools)} if tools else {}
        try:
            resp = self._client.messages.create(
                model=self.model, system=system, messages=to_anthropic_messages(messages),
                max_tokens=max_output_tokens, **kwargs,
            )  # fmt: skip
        except anthropic.APIStatusError as exc:
            raise LLMError(f"{self.provider}:{self.model}: HTTP {exc.status_code}: {_one_line(exc.message)}") from None
        except anthropic.AnthropicError as exc:  # connection errors, timeouts, missing credentials
            raise LLMError(f"{self.provider}:{self.model}: {type(exc).__name__}: {_one_line(str(exc))}") from None
        return from_anthropic_response(resp)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- model selection ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    provider: str
    model: str
    weight: float  # relative; ModelMix normalizes


def parse_llm_specs(specs: str | Sequence[str]) -> list[ModelChoice]:
    """Parse `--llm` values: each `PROVIDER:MODEL[=WEIGHT]`, comma-separated within a value,
    and values repeated. The provider is what precedes the first ':' (model names keep
    theirs: `local:qwen2.5-coder:32b`); a weight is a positive number after the last '=',
    1 when left out. Raises SpecError naming the bad entry.
    """
    values = [specs] if isinstance(specs, str) else list(specs)
    out: list[ModelChoice] = []
    for value in values:
        for entry in (e.strip() for e in value.split(",")):
            if not entry:
                continue
            provider, sep, rest = entry.partition(":")
            model, weight = rest, 1.0
            head, eq, tail = rest.rpartition("=")
            if eq:
                try:
                    model, weight = head, float(tail)
                except ValueError:
                    raise SpecError(f"--llm: '{entry}': weight '{tail}' is not a number") from None
                if not weight > 0:
                    raise SpecError(f"--llm: '{entry}': weight must be positive")
            if not sep or not provider.strip() or not model.strip():
                raise SpecError(f"--llm: '{entry}': expected PROVIDER:MODEL[=WEIGHT], e.g. openai:gpt-4.1")
            out.append(ModelChoice(provider.strip(), model.strip(), weight))
    if not out:
        raise SpecError("--llm: no model given (expected PROVIDER:MODEL, e.g. anthropic:claude-sonnet-4-5)")
    return out


@dataclass
class ModelMix:
    """Clients with weights; `choose` draws one per agent step."""

    clients: list[LLMClient]
    weights: list[float]
    prices: dict[str, Price] = field(default_factory=dict)  # the config's price overrides
    max_output_tokens: int = 8192

    def choose(self, rng: random.Random) -> LLMClient:
        if len(self.clients) == 1:
            return self.clients[0]
        return rng.choices(self.clients, weights=self.weights)[0]

    @classmethod
    def of(cls, client: LLMClient, prices: Mapping[str, Price] | None = None) -> ModelMix:
        """A mix of one client (e.g. one built by hand, or in a test)."""
        return cls([client], [1.0], dict(prices or {}))


def make_client(choice: ModelChoice, config: LLMConfig) -> LLMClient:
    """The client for one choice under `config`. Raises SpecError for an unknown provider,
    a missing key variable, or (OpenAI protocol) no API key at all."""
    protocol = config.protocol_of(choice.provider)
    cfg = config.providers.get(choice.provider, ProviderConfig())
    api_key = cfg.api_key
    if api_key is None and cfg.api_key_env:
        api_key = os.environ.get(cfg.api_key_env)
        if not api_key:
            raise SpecError(f"{config.path}: providers.{choice.provider}.api_key_env: "
                            f"environment variable {cfg.api_key_env} is not set")  # fmt: skip
    common = dict(provider=choice.provider, base_url=cfg.base_url, api_key=api_key, timeout_s=config.timeout_s,
                  max_retries=config.max_retries)  # fmt: skip
    if protocol == "openai":
        return OpenAIChatClient(choice.model, max_tokens_field=cfg.max_tokens_field, **common)
    return AnthropicClient(choice.model, **common)


def make_llm(specs: str | Sequence[str], config: LLMConfig | None = None) -> ModelMix:
    """Parse `--llm` values and build their clients under `config` (default: `load_llm_config()`).
    Raises SpecError as `parse_llm_specs`, `make_client` and `load_llm_config` do."""
    config = config if config is not None else load_llm_config()
    choices = parse_llm_specs(specs)
    return ModelMix([make_client(c, config) for c in choices], [c.weight for c in choices],
                    config.price_overrides(), config.max_output_tokens)  # fmt: skip
