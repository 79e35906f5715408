-- Periodic work that must happen once per interval across every replica
-- (the safety-net poll, retention): a replica runs a task only after it
-- moved `last_run_at` forward in one conditional statement, so of replicas
-- waking together exactly one wins. `holder` and `runs` are for operators
-- and tests. Keep in step with the other backend's 0007.
CREATE TABLE periodic_tasks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    last_run_at BIGINT NOT NULL,
    runs BIGINT NOT NULL DEFAULT 0
);
