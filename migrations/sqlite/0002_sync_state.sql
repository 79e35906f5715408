-- Sync engine state. Keep in step with ../postgres/0002_sync_state.sql.

-- A PR closed without merging holds automatic syncs until new content
-- arrives or someone asks for a sync (separate from a reviewer's pause).
ALTER TABLE projects ADD COLUMN auto_sync_held BIGINT NOT NULL DEFAULT 0;
-- The last failed job, for `/graft retry`.
ALTER TABLE projects ADD COLUMN last_failed_job_id BIGINT;
-- Conflicting paths of the last reconcile, as JSON (null: none).
ALTER TABLE projects ADD COLUMN conflicts TEXT;
-- Whether someone other than graft committed to the sync branch.
ALTER TABLE projects ADD COLUMN sync_branch_shared BIGINT NOT NULL DEFAULT 0;
-- The head graft last pushed to the sync branch (lease for rewrites).
ALTER TABLE projects ADD COLUMN sync_branch_sha TEXT;
-- Sticky comment id on the PR/MR, once created.
ALTER TABLE projects ADD COLUMN status_comment_id BIGINT;
-- Free-form name of the generator that last wrote files.
ALTER TABLE projects ADD COLUMN source TEXT;
-- Validation findings of the last sync, as JSON.
ALTER TABLE projects ADD COLUMN last_findings TEXT;

CREATE INDEX managed_files_state ON managed_files(project_id, state);
