"""What an LLM call costs: a per-model price table in US dollars per million tokens.

The built-in table holds the list prices the providers publish (OpenAI:
https://openai.com/api/pricing, Anthropic: https://www.anthropic.com/pricing#api), as
known when this file was written; they change, so the user overrides any of them, and
adds models, in the `[prices]` table of the LLM config file (see `solforge.agent.llm`).

A model is priced only when its name is in the table, either exactly or followed by a
date suffix (`claude-sonnet-4-5-20250929`, `gpt-4o-2024-08-06`) or `-latest`; an
OpenRouter-style `vendor/model` name is looked up by its last part. Anything else is
unknown and costs nothing in the accounting, never the price of a similar name: a
guess would make the run's budget wrong in a way nobody sees. Local servers (vLLM,
Ollama, ...) are unknown unless the user prices them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    """List price of one model, US dollars per million (1e6) tokens."""

    input_usd_per_mtok: float  # prompt tokens
    output_usd_per_mtok: float  # completion tokens
    source: str  # where the figure comes from

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Cost of one call in US dollars: tokens / 1e6 * the per-million price, summed."""
        return (input_tokens * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok) / 1e6


_OPENAI = "https://openai.com/api/pricing (standard tier)"
_ANTHROPIC = "https://www.anthropic.com/pricing#api"

DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.00, _OPENAI),
    "gpt-5-mini": Price(0.25, 2.00, _OPENAI),
    "gpt-5-nano": Price(0.05, 0.40, _OPENAI),
    "gpt-4.1": Price(2.00, 8.00, _OPENAI),
    "gpt-4.1-mini": Price(0.40, 1.60, _OPENAI),
    "gpt-4.1-nano": Price(0.10, 0.40, _OPENAI),
    "gpt-4o": Price(2.50, 10.00, _OPENAI),
    "gpt-4o-mini": Price(0.15, 0.60, _OPENAI),
    "o3": Price(2.00, 8.00, _OPENAI),
    "o3-mini": Price(1.10, 4.40, _OPENAI),
    "o4-mini": Price(1.10, 4.40, _OPENAI),
    "claude-opus-4-5": Price(5.00, 25.00, _ANTHROPIC),
    "claude-opus-4-1": Price(15.00, 75.00, _ANTHROPIC),
    "claude-opus-4": Price(15.00, 75.00, _ANTHROPIC),
    "claude-sonnet-4-5": Price(3.00, 15.00, _ANTHROPIC),
    "claude-sonnet-4": Price(3.00, 15.00, _ANTHROPIC),
    "claude-3-7-sonnet": Price(3.00, 15.00, _ANTHROPIC),
    "claude-haiku-4-5": Price(1.00, 5.00, _ANTHROPIC),
    "claude-3-5-haiku": Price(0.80, 4.00, _ANTHROPIC),
}

# What may follow a priced name and still be the same model: a release date or an alias.
_VERSION_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)")


def price_for(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model`, or None when it is unknown.

    `overrides` (the config file's `[prices]`) win over the built-in table. A name
    matches a table entry exactly or as entry + a date suffix (`-20250929`,
    `-2024-08-06`) or `-latest`, case-insensitively; `vendor/model` is looked up as
    `model`. No other prefix matching: `claude-opus-4-9` is unknown, not priced as
    `claude-opus-4`.
    """
    table = {k.lower(): v for k, v in DEFAULT_PRICES.items()}
    table.update({k.lower(): v for k, v in (overrides or {}).items()})
    names = [model.lower()]
    if "/" in model:
        names.append(model.rsplit("/", 1)[1].lower())
    for name in names:
        if name in table:
            return table[name]
        for entry, price in table.items():
            if name.startswith(entry) and _VERSION_SUFFIX.fullmatch(name[len(entry):]):
                return price
    return None
