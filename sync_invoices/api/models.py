"""Request bodies of the API, validated field by field (a bad field is a 422 naming it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, ValidationInfo

MAX_BATCH_SIZE = 10_000  # as the command line's --batch-size


class Envelope(BaseModel):
    """Every answer of the API, errors included (SPEC s.10); for the OpenAPI document."""

    success: bool
    data: Any = None
    message: str = ""


class PushBody(BaseModel):
    """Settings shared by the push endpoints."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored

    batch_size: int = Field(50, ge=1, le=MAX_BATCH_SIZE, description="Invoices claimed per batch.")


class BatchBody(PushBody):
    """`POST /api/v1/sync/batch`."""


class AllBody(PushBody):
    """`POST /api/v1/sync/all`: batches until nothing eligible is left, or `max_batches`."""

    max_batches: int | None = Field(None, ge=1, le=1_000_000, description="Stop after this many batches.")


class VerifyBody(BaseModel):
    """`POST /api/v1/sync/verify` (SPEC s.9)."""

    model_config = ConfigDict(extra="forbid")

    full: StrictBool = Field(False, description="Read every MIS-* invoice, not only what changed.")
    repair: StrictBool = Field(False, description="Make QuickBooks equal to the MIS where the MIS is authoritative.")
    void_deleted: StrictBool = Field(False, description="With repair: void QuickBooks invoices whose MIS row is gone.")

    @field_validator("void_deleted")
    @classmethod
    def _void_needs_repair(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("repair"):
            raise ValueError("void_deleted only means something with repair: true")
        return value
