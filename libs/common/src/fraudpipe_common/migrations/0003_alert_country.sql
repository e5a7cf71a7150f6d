-- fraudpipe schema v3: the transaction's country on each alert (the API's stats by country).
-- Nullable: alerts written before this migration have none. Idempotent like every migration.
BEGIN;

ALTER TABLE alerts ADD COLUMN IF NOT EXISTS country text;

INSERT INTO schema_migrations (version) VALUES ('0003_alert_country') ON CONFLICT DO NOTHING;

COMMIT;
