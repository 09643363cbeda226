"""The `condition` node: the first branch whose expression holds is taken, else `else`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from flowport.engine.nodes.base import ELSE, Model, NodeConfig, NodeContext, NodeOutput


class Branch(Model):
    name: str = Field(min_length=1)
    # A Jinja2 expression over the inputs and upstream nodes, e.g. `age >= 18`.
    when: str = Field(min_length=1)


class ConditionNode(NodeConfig):
    """Chooses one outgoing branch; edges name theirs with `"branch": "<name>"`."""

    type: Literal["condition"]
    branches: list[Branch] = Field(min_length=1)

    @field_validator("branches")
    @classmethod
    def _names_are_unique(cls, branches: list[Branch]) -> list[Branch]:
        seen: set[str] = set()
        for branch in branches:
            if branch.name == ELSE:
                raise ValueError(f"{ELSE!r} is the implicit fallback branch; name yours otherwise")
            if branch.name in seen:
                raise ValueError(f"duplicate branch name {branch.name!r}")
            seen.add(branch.name)
        return branches

    def expression_sources(self) -> dict[str, str]:
        return {f"branches[{i}].when": branch.when for i, branch in enumerate(self.branches)}

    def branch_names(self) -> tuple[str, ...]:
        return (*(branch.name for branch in self.branches), ELSE)


def run(node: ConditionNode, ctx: NodeContext) -> NodeOutput:
    chosen = ELSE
    # In order, and lazily: a later branch's expression may rely on an earlier one having
    # been false (`age >= 18`, then `age >= 13`).
    for index, branch in enumerate(node.branches):
        if ctx.evaluate(f"branches[{index}].when"):
            chosen = branch.name
            break
    return {"output": chosen, "branch": chosen}
