"""Configuration of the live feeds (the `[feeds]` table). Extended by the connectors work."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FeedsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
