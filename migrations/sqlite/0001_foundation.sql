-- graft schema, SQLite flavour. Keep in step with ../postgres/0001_foundation.sql:
-- same tables, columns and indexes; only the id column syntax differs.
-- Times are Unix milliseconds; flags are 0/1 integers.

CREATE TABLE integrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    name TEXT NOT NULL,
    base_url TEXT NOT NULL,
    app_id TEXT,
    token_sealed TEXT,
    webhook_secret_sealed TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE installations (
    id BIGINT PRIMARY KEY,
    account TEXT NOT NULL,
    suspended BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE installation_repositories (
    installation_id BIGINT NOT NULL REFERENCES installations(id) ON DELETE CASCADE,
    repo TEXT NOT NULL,
    PRIMARY KEY (installation_id, repo)
);
CREATE INDEX installation_repositories_repo ON installation_repositories(repo);

CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    integration_id BIGINT REFERENCES integrations(id),
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    base_path TEXT NOT NULL,
    kind TEXT NOT NULL,
    mode TEXT NOT NULL,
    auto_sync BIGINT NOT NULL DEFAULT 0,
    auto_merge BIGINT NOT NULL DEFAULT 0,
    paused BIGINT NOT NULL DEFAULT 0,
    slug TEXT NOT NULL,
    sync_branch TEXT NOT NULL,
    sync_status TEXT NOT NULL DEFAULT 'idle',
    sync_error TEXT,
    last_synced_commit_sha TEXT,
    last_pulled_at BIGINT,
    pull_request_number BIGINT,
    pull_request_url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
    -- Unique per location: see 0005 (per integration, case-insensitive).
);
CREATE INDEX projects_repo ON projects(provider, repo);

CREATE TABLE managed_files (
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    content BLOB NOT NULL,
    blob_sha TEXT NOT NULL,
    size BIGINT NOT NULL,
    executable BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    sync_on_change BIGINT NOT NULL DEFAULT 0,
    synced_blob_sha TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, path)
);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    action TEXT,
    status TEXT NOT NULL,
    payload BLOB,
    error TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    received_at BIGINT NOT NULL,
    processed_at BIGINT,
    UNIQUE (provider, delivery_id)
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    project_id BIGINT,
    payload TEXT NOT NULL,
    dedupe_key TEXT,
    state TEXT NOT NULL,
    run_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    locked_by TEXT,
    locked_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
-- At most one running job per project, whichever process runs it.
CREATE UNIQUE INDEX jobs_one_running_per_project ON jobs(project_id) WHERE state = 'running';
-- Identical queued work coalesces into one job.
CREATE UNIQUE INDEX jobs_queued_dedupe ON jobs(dedupe_key) WHERE state = 'queued';
CREATE INDEX jobs_claimable ON jobs(state, run_at);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id BIGINT,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    commit_sha TEXT,
    pull_request_url TEXT,
    details TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_project ON events(project_id, id);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens(name) WHERE revoked_at IS NULL;
