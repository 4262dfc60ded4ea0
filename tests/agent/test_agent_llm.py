"""LLM clients against loopback servers driven by the real openai / anthropic SDKs:
protocol conversion both ways, 429 retries, errors, model selection, the config file,
and the price table."""

from __future__ import annotations

import time

import pytest
from agent_support import servers

from solforge.agent.config import LLMConfig, load_llm_config
from solforge.agent.llm import (
    AnthropicClient,
    LLMError,
    Message,
    OpenAIChatClient,
    Role,
    StopReason,
    ToolCall,
    ToolSpec,
    make_llm,
    parse_llm_specs,
    to_anthropic_messages,
    to_openai_messages,
)
from solforge.agent.pricing import Price, price_for
from solforge.spec import SpecError




def _key_sent(headers: dict[str, str]) -> str | None:
    """The API key an Anthropic request carried (SDK releases send x-api-key or a bearer token)."""
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ") or None

TOOL = ToolSpec("read_file", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}},
                                              "required": ["path"]})  # fmt: skip


# -- OpenAI protocol -----------------------------------------------------------------------


def test_openai_tool_calls_round_trip_through_the_real_sdk():
    script = [servers.openai_reply([("read_file", {"path": "kernel.py"})], text="looking", usage=(321, 45)),
              servers.openai_reply(text="done", usage=(400, 5))]  # fmt: skip
    with servers.OpenAIServer(script) as srv:
        client = OpenAIChatClient("scripted-model", base_url=srv.base_url, api_key="test-key", max_retries=0)
        first = client.complete("SYSTEM", [Message(Role.user, "go")], [TOOL], max_output_tokens=77)
        call = first.message.tool_calls[0]
        history = [Message(Role.user, "go"), first.message,
                   Message(Role.tool, "file text", tool_call_id=call.id)]  # fmt: skip
        second = client.complete("SYSTEM", history, [TOOL], max_output_tokens=77)
    assert (call.name, call.arguments, first.message.text) == ("read_file", {"path": "kernel.py"}, "looking")
    assert first.stop_reason is StopReason.tool_use and second.stop_reason is StopReason.end
    assert (first.usage.input_tokens, first.usage.output_tokens) == (321, 45)
    sent = srv.requests[1].body
    assert sent["model"] == "scripted-model" and sent["max_completion_tokens"] == 77
    assert sent["messages"][0] == {"role": "system", "content": "SYSTEM"}
    assert sent["messages"][2]["tool_calls"][0]["function"] == {"name": "read_file",
                                                                "arguments": '{"path": "kernel.py"}'}  # fmt: skip
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": call.id, "content": "file text"}
    assert sent["tools"][0]["function"]["name"] == "read_file"
    assert srv.requests[0].headers.get("authorization") == "Bearer test-key"


def test_openai_malformed_arguments_are_kept_as_an_error_not_raised():
    with servers.OpenAIServer([servers.openai_reply([("read_file", '{"path": "kernel.py"')])]) as srv:
        client = OpenAIChatClient("m", base_url=srv.base_url, api_key="k", max_retries=0)
        call = client.complete("s", [Message(Role.user, "go")], [TOOL], 10).message.tool_calls[0]
    assert call.arguments is None and "not valid JSON" in call.error and call.raw_arguments.startswith('{"path"')
    # sent back in the history as {}: some servers re-parse the arguments of past calls
    resent = to_openai_messages("s", [Message(Role.assistant, tool_calls=(call,))])
    assert resent[1]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_openai_429_is_retried_by_the_sdk():
    script = [servers.openai_error(429, headers=servers.FAST_RETRY), servers.openai_reply(text="after the retry")]
    with servers.OpenAIServer(script) as srv:
        client = OpenAIChatClient("m", base_url=srv.base_url, api_key="k", max_retries=2)
        t0 = time.monotonic()
        resp = client.complete("s", [Message(Role.user, "go")], [], 10)
    assert resp.message.text == "after the retry"
    assert len(srv.requests) == 2 and time.monotonic() - t0 < 5


def test_openai_errors_become_one_line_llm_errors():
    script = [servers.openai_error(429, headers=servers.FAST_RETRY)] * 2
    with servers.OpenAIServer(script) as srv:
        client = OpenAIChatClient("m", base_url=srv.base_url, api_key="k", max_retries=1)
        with pytest.raises(LLMError, match=r"^openai:m: HTTP 429: ") as info:
            client.complete("s", [Message(Role.user, "go")], [], 10)
    assert "\n" not in str(info.value) and len(srv.requests) == 2  # one try plus max_retries=1


def test_openai_unreachable_server_is_an_llm_error():
    client = OpenAIChatClient("m", base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0, timeout_s=2)
    with pytest.raises(LLMError, match="openai:m: APIConnectionError"):
        client.complete("s", [Message(Role.user, "go")], [], 10)


def test_openai_without_a_key_is_a_spec_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SpecError, match=r"--llm openai:m: .*api_key in \[providers.openai\]"):
        OpenAIChatClient("m", base_url="http://127.0.0.1:9/v1")


# -- Anthropic protocol --------------------------------------------------------------------


def test_anthropic_tool_use_round_trip_through_the_real_sdk():
    script = [servers.anthropic_reply([("read_file", {"path": "kernel.py"}), ("read_file", {"path": "b.py"})],
                                      text="two files", usage=(500, 60)),
              servers.anthropic_reply(text="done")]  # fmt: skip
    with servers.AnthropicServer(script) as srv:
        client = AnthropicClient("scripted-claude", base_url=srv.base_url, api_key="test-key", max_retries=0)
        first = client.complete("SYSTEM", [Message(Role.user, "go")], [TOOL], 99)
        a, b = first.message.tool_calls
        history = [Message(Role.user, "go"), first.message,
                   Message(Role.tool, "A", tool_call_id=a.id),
                   Message(Role.tool, "no such file", tool_call_id=b.id, is_error=True)]  # fmt: skip
        client.complete("SYSTEM", history, [TOOL], 99)
    assert [c.arguments for c in first.message.tool_calls] == [{"path": "kernel.py"}, {"path": "b.py"}]
    assert first.usage.input_tokens == 500 and first.stop_reason is StopReason.tool_use
    sent = srv.requests[1].body
    assert sent["system"] == "SYSTEM" and sent["max_tokens"] == 99
    assert sent["tools"][0] == {"name": "read_file", "description": "Read a file.",
                                "input_schema": TOOL.parameters}  # fmt: skip
    # both results in ONE user turn, as the API requires alternating roles
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    results = sent["messages"][2]["content"]
    assert [r["tool_use_id"] for r in results] == [a.id, b.id]
    assert results[1]["is_error"] is True and "is_error" not in results[0]
    assert _key_sent(srv.requests[0].headers) == "test-key"


def test_anthropic_429_is_retried_by_the_sdk():
    script = [servers.anthropic_error(429, headers=servers.FAST_RETRY), servers.anthropic_reply(text="ok")]
    with servers.AnthropicServer(script) as srv:
        client = AnthropicClient("m", base_url=srv.base_url, api_key="k", max_retries=2)
        resp = client.complete("s", [Message(Role.user, "go")], [], 10)
    assert resp.message.text == "ok" and len(srv.requests) == 2


def test_anthropic_client_error_is_not_retried():
    with servers.AnthropicServer([servers.anthropic_error(400, "prompt is too long")] * 3) as srv:
        client = AnthropicClient("m", base_url=srv.base_url, api_key="k", max_retries=3)
        with pytest.raises(LLMError, match="HTTP 400: .*prompt is too long"):
            client.complete("s", [Message(Role.user, "go")], [], 10)
    assert len(srv.requests) == 1


def test_anthropic_conversion_merges_turns_and_never_sends_empty_content():
    call = ToolCall("t1", "read_file", None, raw_arguments="[1]", error="arguments must be a JSON object")
    out = to_anthropic_messages([
        Message(Role.user, "go"), Message(Role.assistant, tool_calls=(call,)),
        Message(Role.tool, "bad", tool_call_id="t1", is_error=True), Message(Role.user, "keep going"),
        Message(Role.assistant, ""),
    ])  # fmt: skip
    assert [m["role"] for m in out] == ["user", "assistant", "user", "assistant"]
    assert out[1]["content"] == [{"type": "tool_use", "id": "t1", "name": "read_file", "input": {}}]
    assert [b["type"] for b in out[2]["content"]] == ["tool_result", "text"]
    assert out[3]["content"] == [{"type": "text", "text": "(no reply)"}]


# -- selection, config, prices -------------------------------------------------------------


def test_parse_llm_specs_weights_repeats_and_colons_in_model_names():
    got = parse_llm_specs(["openai:a=0.7,anthropic:b=0.3", "local:qwen2.5-coder:32b"])
    assert [(c.provider, c.model, c.weight) for c in got] == [
        ("openai", "a", 0.7), ("anthropic", "b", 0.3), ("local", "qwen2.5-coder:32b", 1.0)]
    for bad, why in [("gpt-4o", "expected PROVIDER:MODEL"), ("openai:m=x", "not a number"),
                     ("openai:m=0", "positive"), (",", "no model given"), ("openai:", "expected PROVIDER:MODEL")]:
        with pytest.raises(SpecError, match=why):
            parse_llm_specs(bad)


def test_model_mix_draws_by_weight():
    import random

    mix = make_llm("openai:a=0.9,openai:b=0.1", LLMConfig(providers={"openai": {"api_key": "k"}}))
    rng = random.Random(0)
    drawn = [mix.choose(rng).model for _ in range(2000)]
    assert 0.85 < drawn.count("a") / len(drawn) < 0.95


def test_config_file_names_an_endpoint_and_prices(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_KEY", "from-env")
    with servers.OpenAIServer([servers.openai_reply(text="hi from vllm")]) as srv:
        path = tmp_path / "llm.toml"
        path.write_text(f"""
timeout_s = 30
max_retries = 1
max_output_tokens = 1234
[providers.local]
protocol = "openai"
base_url = "{srv.base_url}"
api_key_env = "LOCAL_KEY"
max_tokens_field = "max_tokens"
[prices."qwen-coder"]
input_usd_per_mtok = 0.5
output_usd_per_mtok = 1.5
""")
        config = load_llm_config(path)
        mix = make_llm("local:qwen-coder", config)
        resp = mix.clients[0].complete("s", [Message(Role.user, "go")], [], mix.max_output_tokens)
    assert resp.message.text == "hi from vllm"
    assert srv.requests[0].body["max_tokens"] == 1234 and "max_completion_tokens" not in srv.requests[0].body
    assert srv.requests[0].headers["authorization"] == "Bearer from-env"
    assert mix.prices["qwen-coder"].cost_usd(2_000_000, 1_000_000) == pytest.approx(2.5)


def test_sdk_env_vars_give_the_endpoint_and_key(monkeypatch):
    with servers.AnthropicServer([servers.anthropic_reply(text="env")]) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
        mix = make_llm("anthropic:claude-x", LLMConfig())
        assert mix.clients[0].complete("s", [Message(Role.user, "go")], [], 10).message.text == "env"
    assert _key_sent(srv.requests[0].headers) == "env-key"


def test_config_errors_name_the_file_and_field(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("[providers.local]\nbase_ur = 'x'\n")
    with pytest.raises(SpecError, match=r"bad.toml: providers.local.base_ur"):
        load_llm_config(bad)
    bad.write_text("timeout_s = [\n")
    with pytest.raises(SpecError, match="bad.toml: malformed TOML"):
        load_llm_config(bad)
    with pytest.raises(SpecError, match="no such LLM config file"):
        load_llm_config(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match=r"unknown provider 'nope'.*\[providers.nope\]"):
        make_llm("nope:m", LLMConfig())
    # no file at the default location: the defaults, no error
    monkeypatch.delenv("SOLFORGE_LLM_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    assert load_llm_config().timeout_s == LLMConfig().timeout_s


def test_price_table_matches_exact_names_and_dated_versions_only():
    assert price_for("gpt-4o-2024-08-06") == price_for("gpt-4o")
    assert price_for("gpt-4o-mini").input_usd_per_mtok == 0.15  # not gpt-4o's price
    assert price_for("claude-sonnet-4-5-20250929").output_usd_per_mtok == 15.0
    assert price_for("anthropic/claude-sonnet-4-5") == price_for("claude-sonnet-4-5")  # OpenRouter names
    assert price_for("claude-opus-4-9") is None  # unknown, never guessed from a prefix
    assert price_for("Qwen/Qwen2.5-Coder-32B-Instruct") is None
    mine = Price(0.0, 0.0, "mine")
    assert price_for("gpt-4o", {"gpt-4o": mine}) is mine
    assert Price(3.0, 15.0, "x").cost_usd(1000, 2000) == pytest.approx(0.033)
