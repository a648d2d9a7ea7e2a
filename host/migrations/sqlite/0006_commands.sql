-- Commands plugins sent to devices (open a gate, sound an alarm), each recorded with how it
-- ended: `sent` until the device acknowledges or refuses it, or until its deadline passes
-- (`timed-out`). A device may answer only its own commands, and only while they are `sent`.
CREATE TABLE device_commands (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    plugin_id   TEXT NOT NULL,
    command     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL,
    reply       TEXT,
    created_at  BIGINT NOT NULL,
    deadline_at BIGINT NOT NULL,
    answered_at BIGINT
);
CREATE INDEX device_commands_device ON device_commands (device_id, created_at);
CREATE INDEX device_commands_status ON device_commands (device_id, status, deadline_at);
