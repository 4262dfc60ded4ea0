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
- `operators`: registers `agent` and `agent-cli` in the search's operator registry.
  Importing this package is what makes them available to `solforge.search`; the
  search never imports the agent.

Operators see a `solforge.search.SearchContext` and return a Candidate or NoCandidate
with their notes and costs: they never read or write the archive.

The SDKs (`openai`, `anthropic`: the `llm` extra) are imported only when a client is made.
"""

from __future__ import annotations

from solforge.agent.config import LLMConfig, load_llm_config
from solforge.agent.external import ExternalAgentOperator, WorkspaceEvaluation, eval_workspace, render_command
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
from solforge.agent.loop import AgentLimits, AgentOperator, StepMeter, StepOutcome, make_evaluate_fn
from solforge.agent.operators import AGENT, AGENT_CLI
from solforge.agent.pricing import DEFAULT_PRICES, Price, price_for
from solforge.agent.tools import AgentTools, ToolResult
from solforge.agent.workspace import PatchError, Workspace

__all__ = [
    "DEFAULT_PRICES",
    "AgentLimits",
    "AgentOperator",
    "AgentTools",
    "AGENT",
    "AGENT_CLI",
    "AnthropicClient",
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
    "StepMeter",
    "StepOutcome",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "Usage",
    "Workspace",
    "WorkspaceEvaluation",
    "eval_workspace",
    "load_llm_config",
    "make_evaluate_fn",
    "make_llm",
    "parse_llm_specs",
    "price_for",
    "render_command",
]
