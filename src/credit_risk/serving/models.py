"""Request and response bodies of the scoring API (DESIGN.md "API").

The same models validate requests in the Lambda and produce the OpenAPI document
(``openapi.json``), so the two cannot disagree.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from credit_risk import decision_ids
from credit_risk.names import MAX_BATCH_SIZE

# Customer ids are text (leading zeros matter). The pattern keeps anything that
# could not be an id (quotes, spaces, control characters, other scripts) out at
# the door with a 400, so it never reaches the store or the logs.
CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MAX_CUSTOMER_ID_LENGTH = 64

CustomerId = Annotated[
    str,
    StringConstraints(
        strict=True, min_length=1, max_length=MAX_CUSTOMER_ID_LENGTH, pattern=CUSTOMER_ID_PATTERN
    ),
    Field(
        description="The lender's customer id (text; leading zeros matter).", examples=["5008804"]
    ),
]
Decision = Literal["approve", "decline"]
# A UUID version 7 (credit_risk.decision_ids): unique without coordination, in time order.
DECISION_ID_PATTERN = decision_ids.PATTERN
DecisionId = Annotated[
    str,
    Field(
        description="Id of the recorded decision: GET /v1/decisions/{decision_id} returns it.",
        examples=["019ad8a4-5f3e-7c41-9a0b-2f6d1e8c7a55"],
    ),
]


def parse_json(text: str) -> Any:
    """``json.loads`` for request bodies: input it cannot take (nesting deeper than
    the parser's recursion, integers past Python's digit limit) is reported as
    invalid JSON, a 400, instead of escaping as an unexpected error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError) as exc:
        raise json.JSONDecodeError(f"unparseable body: {type(exc).__name__}", text, 0) from None


def dump_json(body: Any) -> str:
    """Response bodies as compact JSON text (UTF-8, not ASCII-escaped), the API's
    serializer: pydantic-core's encoder, which writes a batch of scores several
    times faster than ``json.dumps`` (most of that work is formatting floats)."""
    return pydantic_core.to_json(body).decode()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ScoreRequest(_Strict):
    customer_id: CustomerId


class BatchScoreRequest(_Strict):
    customer_ids: list[CustomerId] = Field(
        min_length=1,
        description=f"Up to {MAX_BATCH_SIZE} customer ids; more is refused with 413.",
        # Documented, not validated here: the route answers a longer list with 413.
        json_schema_extra={"maxItems": MAX_BATCH_SIZE},
    )


class Reason(BaseModel):
    """A feature that pushed this customer's probability of default up."""

    code: str = Field(description="Stable reason code.", examples=["MANY_PREVIOUS_LOANS"])
    text: str = Field(
        description=(
            "The statement an adverse-action notice prints: the reason table of the "
            "model version (its metadata's reason_table)."
        ),
        examples=["Excessive number of previous loans"],
    )
    feature: str = Field(description="The model input behind it.")
    value: float | None = Field(description="The customer's value of that input (null: missing).")
    contribution: float = Field(description="Its push on the model's log-odds (> 0 raises risk).")


class Score(BaseModel):
    customer_id: str
    default_probability: float = Field(ge=0.0, le=1.0)
    decision: Decision = Field(
        description="decline when default_probability is at or above threshold."
    )
    threshold: float = Field(ge=0.0, le=1.0)
    reasons: list[Reason]
    model_version: str
    features_as_of: date
    decision_id: DecisionId


class BatchScoreResponse(BaseModel):
    results: list[Score] = Field(description="Scores of the known ids, in request order.")
    unknown_customer_ids: list[str] = Field(
        description="Requested ids with no features in the store, in request order."
    )
    model_version: str


class DecisionRecord(BaseModel):
    """A credit decision as the API returned it, with what it was computed from,
    recorded before the answer left; looked up, never recomputed. Records are kept
    for years and read back through this model: a field added later must have a
    default, or the records written before it could no longer be read."""

    decision_id: DecisionId
    decided_at: datetime = Field(description="When the decision was made (UTC).")
    request_id: str = Field(description="The API request that asked for it.")
    customer_id: str
    default_probability: float = Field(ge=0.0, le=1.0)
    decision: Decision
    threshold: float = Field(ge=0.0, le=1.0)
    reasons: list[Reason] = Field(description="The reasons given, strongest first.")
    model_version: str
    features: dict[str, int | float | None] = Field(
        description="The model inputs as read from the feature store (null: missing)."
    )
    features_as_of: date = Field(description="The date the features describe.")
    snapshot_id: str = Field(description="The feature-store snapshot they were read from.")
    release_id: str | None = Field(
        default=None, description="The model release in progress then, if any."
    )
    environment: str
    caller: str | None = Field(
        default=None, description="Id of the API key the request came with (API Gateway's)."
    )
    synthetic: str | None = Field(
        default=None,
        description="Set for synthetic traffic (the probe, the release smoke test): who sent it.",
    )


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    model_version: str
    store_reachable: bool
    features_as_of: date | None = None
    snapshot_id: str | None = None


class ErrorResponse(BaseModel):
    error: str = Field(examples=["invalid_request"])
    message: str
    request_id: str | None
