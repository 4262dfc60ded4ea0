"""Workload: concrete var-axis sizes and how each input is made, as FlashInfer Trace writes it."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field

from solforge.spec.definition import _Tagged


class RandomInput(_Tagged):
    """Fresh random values, drawn by the harness (or by the definition's generator)."""

    type: Literal["random"] = "random"


class ScalarInput(_Tagged):
    """A literal scalar passed as is."""

    type: Literal["scalar"] = "scalar"
    value: int | float | bool


class SafetensorsInput(_Tagged):
    """A tensor stored in a safetensors file; `path` is relative to the dataset root."""

    type: Literal["safetensors"] = "safetensors"
    path: str = Field(min_length=1)
    tensor_key: str = Field(min_length=1)


InputSpec = Annotated[Union[RandomInput, ScalarInput, SafetensorsInput], Field(discriminator="type")]


class WorkloadExtension(BaseModel):
    """solforge's fields on a Workload, under the `solforge` key."""

    held_out: bool = Field(default=False, description="Never shown to a search; kept for the final gate.")
    smoke: bool = Field(default=False, description="CPU-sized: same axes as the real shapes, scaled down.")
    label: str | None = Field(default=None, description="Human name, e.g. 'decode b=64'.")


class Workload(BaseModel):
    """One concrete shape set: values of the definition's var axes, and input specs."""

    uuid: str = Field(min_length=1)
    axes: dict[str, int]
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    solforge: WorkloadExtension = Field(default_factory=WorkloadExtension)

    @property
    def held_out(self) -> bool:
        return self.solforge.held_out

    @property
    def smoke(self) -> bool:
        return self.solforge.smoke

    @property
    def label(self) -> str:
        return self.solforge.label or ",".join(f"{k}={v}" for k, v in self.axes.items())
