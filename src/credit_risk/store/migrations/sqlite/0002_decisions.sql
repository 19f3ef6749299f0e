-- Credit decisions as the API returned them (credit_risk.serving.decisions). Ids are
-- lower-case UUID version 7 text, in time order (retention deletes by key range);
-- timestamps ISO-8601 text in UTC.
CREATE TABLE decisions (
    decision_id   TEXT PRIMARY KEY,
    decided_at    TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    model_version TEXT NOT NULL,
    synthetic     INTEGER NOT NULL DEFAULT 0,
    record        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX decisions_customer ON decisions (customer_id, decided_at DESC);
