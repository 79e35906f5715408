-- Recovering webhooks that never reached graft. Keep in step with the
-- other backend's 0008.

-- GitHub deliveries whose redelivery graft asked for (by guid, the
-- X-GitHub-Delivery header), so that it asks once, whichever replica asks.
CREATE TABLE redelivery_requests (
    provider TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    PRIMARY KEY (provider, delivery_id)
);

-- How far recovery scans got (Unix ms of the newest delivery or note
-- seen), by scan name; a mark only moves forward.
CREATE TABLE recovery_marks (
    name TEXT PRIMARY KEY,
    mark BIGINT NOT NULL
);

-- A GitLab project's webhook as graft last read it: `ok`,
-- `temporarily_disabled` (until `disabled_until`), `disabled`, or
-- `missing` (no hook points at graft).
CREATE TABLE webhook_health (
    project_id BIGINT PRIMARY KEY REFERENCES projects(id),
    state TEXT NOT NULL,
    disabled_until BIGINT,
    checked_at BIGINT NOT NULL
);
