"""The agentic variation operators of the search.

- `llm`: LLM clients (OpenAI-compatible chat completions and Anthropic messages, through
  the official SDKs) behind one message and tool-call representation; `--llm` parsing,
  weighted model mixes. `config`: the TOML config file (endpoints, keys, prices).
- `pricing`: the per-model price table (USD per million tokens), overridable.
- `workspace`: the candidate's sources in a temporary directory; SEARCH/REPLACE patches.
- `tools`: the agent's tools (read_file, write_file, apply_patch, evaluate, profile,
  lineage, knowledge, submit); `profiling` backs `profile`.
- `prompts`: the system prompt, the task message, the stall supervisor's redirection.
- `loop`: the tool-using loop and `AgentOperator` (`name = "agent"`).
- `external`: `ExternalAgentOperator` (`name = "agent-cli"`): any coding-agent CLI in a
  prepared git workspace, and `eval_workspace` behind `solforge eval`.

The SDKs (`openai`, `anthropic`: the `llm` extra) are imported only when a client is made.
"""

from __future__ import annotations

from solforge.agent.config import LLMConfig, load_llm_config
from solforge.agent.external import ExternalAgentOperator, eval_workspace, render_command
from solforge.agent.llm import (
    AnthropicClient,
    LLMClient,
    LLMError,
    LLMResponse,
    Message,
    ModelChoice,
    ModelMix,
    OpenAIChatClient,
    Role,
    ToolCall,
    ToolSpec,
    Usage,
    make_llm,
    parse_llm_specs,
)
from solforge.agent.loop import AgentLimits, AgentOperator, BudgetExhausted, StepOutcome, make_evaluate_fn
from solforge.agent.pricing import DEFAULT_PRICES, Price, price_for
from solforge.agent.tools import AgentTools, ToolResult
from solforge.agent.workspace import PatchError, Workspace

__all__ = [
    "DEFAULT_PRICES",
    "AgentLimits",
    "AgentOperator",
    "AgentTools",
    "AnthropicClient",
    "BudgetExhausted",
    "ExternalAgentOperator",
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "LLMResponse",
    "Message",
    "ModelChoice",
    "ModelMix",
    "OpenAIChatClient",
    "PatchError",
    "Price",
    "Role",
    "StepOutcome",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "Usage",
    "Workspace",
    "eval_workspace",
    "load_llm_config",
    "make_evaluate_fn",
    "make_llm",
    "parse_llm_specs",
    "price_for",
    "render_command",
]
