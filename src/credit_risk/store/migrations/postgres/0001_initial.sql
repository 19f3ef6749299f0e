-- Registry of loaded snapshots: one physical table each, kept for rollback.
CREATE TABLE feature_snapshots (
    snapshot_id  text PRIMARY KEY,
    table_name   text NOT NULL UNIQUE,
    as_of        date NOT NULL,
    row_count    bigint NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz
);

-- Exactly one row: which snapshot readers see. Swaps lock it to run one at a time.
CREATE TABLE feature_store_state (
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
    active_snapshot_id text REFERENCES feature_snapshots (snapshot_id),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO feature_store_state (id) VALUES (true);

-- Names the physical snapshot tables: customer_features_000001, ...
CREATE SEQUENCE feature_snapshot_table_seq;

-- What readers query. Until the first load it is empty; each swap replaces it with
-- a SELECT from the new snapshot's table, so its columns must stay exactly these.
CREATE VIEW customer_features AS
SELECT
    NULL::text             AS customer_id,
    NULL::bigint           AS age,
    NULL::bigint           AS years_on_the_job,
    NULL::bigint           AS nb_previous_loans,
    NULL::double precision AS avg_amount_loans_previous,
    NULL::bigint           AS flag_own_car,
    NULL::date             AS as_of,
    NULL::text             AS snapshot_id
WHERE false;
