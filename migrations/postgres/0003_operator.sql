-- Operator experience (GitHub App manifest flow). Keep in step with
-- ../sqlite/0003_operator.sql.

-- One row per GitHub App registration started from /setup/github: the
-- SHA-256 of the `state` sent to GitHub, consumed once by the callback.
CREATE TABLE setup_states (
    state_hash TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX setup_states_created ON setup_states(created_at);

-- At most one GitHub App row (provider 'github'): the app registered with
-- the manifest flow; its private key is sealed in token_sealed.
CREATE UNIQUE INDEX integrations_one_github_app ON integrations(provider) WHERE provider = 'github';
