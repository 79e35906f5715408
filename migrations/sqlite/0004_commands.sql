-- Slash commands. Keep in step with ../postgres/0004_commands.sql.

-- The last text graft saw of each comment that addressed it. GitLab does
-- not send a note's previous text with an edit; this is how an edited
-- note runs only the commands that are new in it.
CREATE TABLE comment_texts (
    provider TEXT NOT NULL,
    repo TEXT NOT NULL,
    comment_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider, repo, comment_id)
);

-- One row per command line graft accepted. The dedupe key (provider,
-- repository, comment, position, hash of the text) is unique, so a comment
-- delivered twice, under any delivery id, runs nothing twice. The outcome
-- is stored as each command finishes, so a retried job neither repeats a
-- command nor loses its answer.
CREATE TABLE command_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    provider TEXT NOT NULL,
    repo TEXT NOT NULL,
    number BIGINT NOT NULL,
    comment_id BIGINT NOT NULL,
    author TEXT NOT NULL,
    command TEXT NOT NULL,
    job_id BIGINT,
    outcome TEXT,
    replied BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX command_runs_job ON command_runs(job_id);
