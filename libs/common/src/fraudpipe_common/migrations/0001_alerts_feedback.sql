-- fraudpipe schema v1: alerts written by the scorer (idempotent on tx_id) and analyst feedback.
-- Every migration is idempotent: the Job may run it again after a retry or a re-created pipeline.
BEGIN;

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS alerts (
    tx_id        text PRIMARY KEY,
    user_id      text NOT NULL,
    decision     text NOT NULL CHECK (decision IN ('FLAG', 'BLOCK')),
    score        double precision NOT NULL,
    model_digest text NOT NULL,
    track        text NOT NULL DEFAULT 'stable' CHECK (track IN ('stable', 'canary', 'shadow')),
    reasons      jsonb NOT NULL DEFAULT '[]'::jsonb,
    features     jsonb NOT NULL DEFAULT '{}'::jsonb,
    event_ts     timestamptz NOT NULL,
    decided_ts   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alerts_user_id_idx ON alerts (user_id);
CREATE INDEX IF NOT EXISTS alerts_decided_ts_idx ON alerts (decided_ts);

CREATE TABLE IF NOT EXISTS feedback (
    id         bigserial PRIMARY KEY,
    tx_id      text NOT NULL REFERENCES alerts (tx_id) ON DELETE CASCADE,
    label      text NOT NULL CHECK (label IN ('fraud', 'legit')),
    analyst    text NOT NULL,
    note       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS feedback_tx_id_idx ON feedback (tx_id);

INSERT INTO schema_migrations (version) VALUES ('0001_alerts_feedback') ON CONFLICT DO NOTHING;

COMMIT;
