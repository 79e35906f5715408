-- Where a managed file came from: `generator` (uploaded through the API
-- or `graft push`) or `discovery` (an existing file taken into management
-- by adopt, or output of a discovery of existing infrastructure), so that
-- reviewers can tell them apart. Keep in step with the other backend's 0009.
ALTER TABLE managed_files ADD COLUMN source TEXT NOT NULL DEFAULT 'generator';
