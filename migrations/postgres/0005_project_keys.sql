-- Repository names compare case-insensitively, as the forges treat them:
-- lookups by repository use this index, and two projects of one
-- repository (whatever the case of its name) never share a location or a
-- sync branch. Keep in step with the other backend's 0005.
CREATE INDEX projects_repo_branch_ci ON projects (provider, LOWER(repo), branch);
CREATE UNIQUE INDEX projects_location_ci
    ON projects (provider, COALESCE(integration_id, 0), LOWER(repo), branch, base_path);
CREATE UNIQUE INDEX projects_sync_branch_ci
    ON projects (provider, LOWER(repo), sync_branch, COALESCE(integration_id, 0));

-- The managed files graft's open PR adds, modifies and deletes, as of its
-- last sync (JSON), so every later edit of the status comment (a failure,
-- a reconcile, `/graft status`) still shows the table.
ALTER TABLE projects ADD COLUMN last_changes TEXT;

-- While a reviewer has paused the project its status is `paused` and
-- `sync_error` is empty (SPEC §2); what they were before comes back with
-- `/graft resume`, so a pause never hides an error for good.
ALTER TABLE projects ADD COLUMN status_before_pause TEXT;
ALTER TABLE projects ADD COLUMN error_before_pause TEXT;

-- The GitLab integration whose webhook secret a delivery carried (NULL:
-- GitHub, or the default GitLab integration from GITLAB_WEBHOOK_SECRET).
-- Its events only reach that integration's projects, so one integration's
-- secret cannot speak for another's repositories.
ALTER TABLE webhook_deliveries ADD COLUMN integration_id BIGINT;
