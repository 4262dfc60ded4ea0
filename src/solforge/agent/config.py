"""The LLM config file: endpoints, keys, limits and prices, in TOML.

Default path `<user config dir>/solforge/llm.toml` (platformdirs; `~/.config/solforge/llm.toml`
on Linux), or SOLFORGE_LLM_CONFIG, or an explicit path. Every key is optional; the
format is in `load_llm_config` and docs/agent.md. A value in the file wins over the
SDK's environment variable (OPENAI_BASE_URL, OPENAI_API_KEY, ANTHROPIC_BASE_URL,
ANTHROPIC_API_KEY); leave it out to use the variable.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from solforge.agent.pricing import Price
from solforge.spec import SpecError, parse_model

CONFIG_ENV = "SOLFORGE_LLM_CONFIG"
PROTOCOLS = ("openai", "anthropic")


class ProviderConfig(BaseModel):
    """One `[providers.NAME]` table. `openai` and `anthropic` exist without one."""

    model_config = ConfigDict(extra="forbid")

    protocol: Literal["openai", "anthropic"] | None = Field(
        default=None, description="Wire protocol; defaults to the name for 'openai' and 'anthropic'."
    )
    base_url: str | None = Field(default=None, description="None: the SDK's env var, else its default URL.")
    api_key: str | None = Field(default=None, description="The key itself (prefer api_key_env).")
    api_key_env: str | None = Field(default=None, description="Name of an environment variable holding the key.")
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = Field(
        default="max_completion_tokens", description="OpenAI protocol: the field that caps the output."
    )


class PriceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_usd_per_mtok: float = Field(ge=0.0, description="US dollars per million prompt tokens.")
    output_usd_per_mtok: float = Field(ge=0.0, description="US dollars per million completion tokens.")


class LLMConfig(BaseModel):
    """The LLM config file (TOML). Every field is optional."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=300.0, gt=0.0, description="Limit of one HTTP attempt of one call, seconds.")
    max_retries: int = Field(default=4, ge=0, description="SDK retries on 408/409/429/5xx and connection errors.")
    max_output_tokens: int = Field(default=8192, ge=1, description="Output cap of one call, tokens.")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    prices: dict[str, PriceConfig] = Field(
        default_factory=dict, description="Model name -> price; wins over the built-in table."
    )
    _path: Path | None = PrivateAttr(default=None)  # where it was read from; None: the defaults

    @property
    def path(self) -> Path | None:
        return self._path

    def price_overrides(self) -> dict[str, Price]:
        where = f"config file {self.path}" if self.path else "LLM config"
        return {m: Price(p.input_usd_per_mtok, p.output_usd_per_mtok, where) for m, p in self.prices.items()}

    def protocol_of(self, provider: str) -> str:
        """The protocol of `provider`. Raises SpecError for a provider that is neither built in nor configured."""
        cfg = self.providers.get(provider)
        if cfg is not None and cfg.protocol is not None:
            return cfg.protocol
        if provider in PROTOCOLS:
            return provider
        where = self.path or default_config_path()
        if cfg is not None:
            raise SpecError(f"{where}: providers.{provider}.protocol: expected 'openai' or 'anthropic'")
        raise SpecError(f"--llm: unknown provider '{provider}' (built in: openai, anthropic; "
                        f"others need a [providers.{provider}] table in {where})")  # fmt: skip


def default_config_path() -> Path:
    """SOLFORGE_LLM_CONFIG when set, else `<user config dir>/solforge/llm.toml` (platformdirs)."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir("solforge")) / "llm.toml"


def load_llm_config(path: str | Path | None = None) -> LLMConfig:
    """Read the LLM config file: `path`, else `default_config_path()`.

    Format (TOML; every key optional):

        timeout_s = 300          # per HTTP attempt, seconds
        max_retries = 4          # SDK retries on 408/409/429/5xx, exponential backoff
        max_output_tokens = 8192
        [providers.openai]       # also [providers.anthropic], or any NAME with protocol
        base_url = "http://localhost:8000/v1"
        api_key_env = "MY_KEY"   # or api_key = "..."
        max_tokens_field = "max_tokens"
        [providers.local]
        protocol = "openai"
        base_url = "http://localhost:11434/v1"
        api_key = "ollama"
        [prices."qwen2.5-coder:32b"]
        input_usd_per_mtok = 0.0
        output_usd_per_mtok = 0.0

    A missing default file means defaults; a missing explicit `path` is an error.
    Raises SpecError (one line, file and field) for unreadable TOML or a bad field.
    """
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV))
    p = Path(path) if path is not None else default_config_path()
    if not p.is_file():
        if explicit:
            raise SpecError(f"{p}: no such LLM config file")
        return LLMConfig()
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: malformed TOML: {exc}") from None
    config = parse_model(LLMConfig, data, str(p))
    config._path = p
    for name in config.providers:
        config.protocol_of(name)
    return config
