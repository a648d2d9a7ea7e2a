-- When each installation's schedules are next due. A worker on any replica claims a due tick
-- by moving `next_due_at` on (a compare-and-set) and, in the same transaction, writes the
-- tick to the outbox, which delivers it at least once.
CREATE TABLE schedule_state (
    tenant_id   TEXT NOT NULL,
    plugin_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    cron        TEXT NOT NULL,
    next_due_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, plugin_id, name)
);
