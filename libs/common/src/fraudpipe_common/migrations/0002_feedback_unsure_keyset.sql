-- fraudpipe schema v2: the API's needs.
-- - feedback may say "unsure" (kept, shown, but never exported as a training label);
-- - keyset pagination of alerts, newest first, overall and per user;
-- - label export in feedback order.
-- Idempotent like every migration.
BEGIN;

ALTER TABLE feedback DROP CONSTRAINT IF EXISTS feedback_label_check;
ALTER TABLE feedback ADD CONSTRAINT feedback_label_check
    CHECK (label IN ('fraud', 'legit', 'unsure'));

CREATE INDEX IF NOT EXISTS alerts_decided_ts_tx_id_idx ON alerts (decided_ts DESC, tx_id DESC);
CREATE INDEX IF NOT EXISTS alerts_user_decided_idx ON alerts (user_id, decided_ts DESC, tx_id DESC);
CREATE INDEX IF NOT EXISTS feedback_created_at_idx ON feedback (created_at);

INSERT INTO schema_migrations (version) VALUES ('0002_feedback_unsure_keyset') ON CONFLICT DO NOTHING;

COMMIT;
