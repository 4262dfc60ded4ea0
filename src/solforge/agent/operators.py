"""The agent's entries in the search's operator registry: `agent` (the LLM tool-using loop)
and `agent-cli` (an external coding-agent CLI). Imported by `solforge.agent`, so
`import solforge.agent` is what makes them available to `solforge.search.evolve`; the
search itself never imports this package.
"""

from __future__ import annotations

from solforge.agent.config import load_llm_config
from solforge.agent.external import ExternalAgentOperator
from solforge.agent.llm import make_llm
from solforge.agent.loop import AgentOperator
from solforge.search.operators import OperatorOptions, OperatorSetup, OperatorSpec, register_operator


def _no_llm(options: OperatorOptions) -> str | None:
    return None if options.llm else "no LLM configured (--llm openai:MODEL or anthropic:MODEL)"


def _no_agent_cmd(options: OperatorOptions) -> str | None:
    return None if options.agent_cmd else "give the agent's command with --agent-cmd \"...\""


def make_agent_operator(setup: OperatorSetup) -> AgentOperator:
    """The `agent` operator of a run: its LLM mix from `--llm` and the LLM config file.
    Raises SpecError for an unknown provider or a malformed config file."""
    options = setup.options
    llm = make_llm(list(options.llm), load_llm_config(options.llm_config))
    return AgentOperator(llm, setup.evaluate, setup.device, setup.language, budget_usd=options.max_cost_usd,
                         dataset_root=setup.dataset_root)


def make_agent_cli_operator(setup: OperatorSetup) -> ExternalAgentOperator:
    """The `agent-cli` operator of a run. Raises SpecError for an empty command template."""
    options = setup.options
    return ExternalAgentOperator(options.agent_cmd or "", options.agent_timeout_s, setup.device, setup.language,
                                 dataset_root=setup.dataset_root)


AGENT = register_operator(OperatorSpec(
    "agent", make_agent_operator, "an LLM coding agent edits, evaluates, profiles and submits a parent (--llm)",
    "agent: try an untried technique of the playbook", default_rank=0, missing=_no_llm, drop_when_missing=True))
AGENT_CLI = register_operator(OperatorSpec(
    "agent-cli", make_agent_cli_operator, "any coding-agent CLI in a prepared workspace (--agent-cmd)",
    "agent-cli: try an untried technique of the playbook", missing=_no_agent_cmd))
