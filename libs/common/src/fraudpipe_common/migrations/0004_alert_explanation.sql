-- fraudpipe schema v4: each alert's explanation (decisions.v1 `explanation`: exact TreeSHAP
-- feature contributions), null for alerts of models that carry no explainer.
BEGIN;

ALTER TABLE alerts ADD COLUMN IF NOT EXISTS explanation jsonb;

INSERT INTO schema_migrations (version) VALUES ('0004_alert_explanation') ON CONFLICT DO NOTHING;

COMMIT;
