-- How a sync writes its commit: `git` (a git push, the default) or `api`
-- (through the forge's API, which signs the commit: GitHub's
-- createCommitOnBranch, GitLab's commits API), for branches that require
-- signed commits. Keep in step with the other backend's 0010.
ALTER TABLE projects ADD COLUMN commit_via TEXT NOT NULL DEFAULT 'git'
    CHECK (commit_via IN ('git', 'api'));
