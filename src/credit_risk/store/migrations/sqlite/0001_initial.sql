-- Registry of loaded snapshots: one physical table each, kept for rollback.
-- Dates are ISO-8601 text; timestamps ISO-8601 text in UTC.
CREATE TABLE feature_snapshots (
    snapshot_id  TEXT PRIMARY KEY,
    table_name   TEXT NOT NULL UNIQUE,
    as_of        TEXT NOT NULL,
    row_count    INTEGER NOT NULL,
    loaded_at    TEXT NOT NULL,
    activated_at TEXT
);

-- Exactly one row: which snapshot readers see, and the number of the next
-- physical table (customer_features_000001, ...).
CREATE TABLE feature_store_state (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    active_snapshot_id TEXT REFERENCES feature_snapshots (snapshot_id),
    next_table_seq     INTEGER NOT NULL DEFAULT 1,
    updated_at         TEXT
);
INSERT INTO feature_store_state (id) VALUES (1);

-- What readers query. Until the first load it is empty; each swap replaces it with
-- a SELECT from the new snapshot's table.
CREATE VIEW customer_features AS
SELECT
    CAST(NULL AS TEXT)    AS customer_id,
    CAST(NULL AS INTEGER) AS age,
    CAST(NULL AS INTEGER) AS years_on_the_job,
    CAST(NULL AS INTEGER) AS nb_previous_loans,
    CAST(NULL AS REAL)    AS avg_amount_loans_previous,
    CAST(NULL AS INTEGER) AS flag_own_car,
    CAST(NULL AS TEXT)    AS as_of,
    CAST(NULL AS TEXT)    AS snapshot_id
WHERE 0;
