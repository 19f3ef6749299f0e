-- Credit decisions as the API returned them (credit_risk.serving.decisions), one row
-- each, written before the answer leaves and looked up by id. record is the
-- document GET /v1/decisions/{id} returns, kept as the text written (json, not
-- jsonb: nothing to parse on the API's insert, and the document stays byte for byte
-- what was recorded; ->> still reads it). Ids are UUIDs version 7, in time order:
-- retention deletes by primary-key range, so decided_at needs no index of its own.
CREATE TABLE decisions (
    decision_id   uuid PRIMARY KEY,
    decided_at    timestamptz NOT NULL,
    customer_id   text NOT NULL,
    model_version text NOT NULL,
    -- Our own synthetic traffic (the probe, the smoke test), recorded all the same.
    synthetic     boolean NOT NULL DEFAULT false,
    record        json NOT NULL
);
-- A dispute starts from a customer: their decisions, newest first.
CREATE INDEX decisions_customer ON decisions (customer_id, decided_at DESC);
