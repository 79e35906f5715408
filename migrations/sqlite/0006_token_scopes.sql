-- What an API token may do: `admin` (everything) or `generator` (read and
-- write the managed files of the projects listed in api_token_projects,
-- read those projects and queue their syncs). Tokens made before scopes
-- existed keep doing everything, so the column's default is `admin`; graft
-- always names the scope when it creates a token. Keep in step with the
-- other backend's 0006.
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin'
    CHECK (scope IN ('admin', 'generator'));

CREATE TABLE api_token_projects (
    token_id BIGINT NOT NULL REFERENCES api_tokens(id),
    project_id BIGINT NOT NULL REFERENCES projects(id),
    PRIMARY KEY (token_id, project_id)
);
