"""Configuration of alert destinations (the `[notify]` table). Extended by the notifiers work."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
