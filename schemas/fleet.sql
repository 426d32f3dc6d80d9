-- liftquant fleet queue: lqd's jobs and what it did with them (docs/FLEET.md).
--
-- The only copy of the schema: coordinator/CMakeLists.txt embeds it into lq_fleet, and
-- lq_fleet_queue_open() runs it inside one BEGIN IMMEDIATE transaction on every open, so every
-- statement is idempotent. The last statement is the schema version (CMake reads it); a
-- database with another version is refused.
--
-- Durability: lqd commits a state change before it acts on it (queued → running with the
-- launch counted, then the process id or Slurm id once it exists), so after a crash at any
-- point the rows say what may be running, and lqd's restart logic (FLEET.md) resolves it.

CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY,
    state       TEXT NOT NULL CONSTRAINT job_state CHECK (state IN
                    ('queued', 'running', 'done', 'failed', 'cancelled')),
    model       TEXT NOT NULL,
    tokenizer   TEXT,
    -- as the request wrote it: "600KiB" or "4bits"
    budget      TEXT NOT NULL,
    out         TEXT NOT NULL,
    db          TEXT NOT NULL,
    -- extra lq-calibrate flags, a JSON array of strings
    args        TEXT NOT NULL CONSTRAINT job_args_is_json CHECK (json_valid(args)),
    -- model files (path, size, mtime), budget and args: what decides whether a rerun is needed
    fingerprint TEXT NOT NULL,
    launcher    TEXT NOT NULL CONSTRAINT job_launcher CHECK (launcher IN ('local', 'slurm')),
    -- the running launch: a local process group leader, or a Slurm job id
    pid         INTEGER,
    slurm_id    TEXT,
    launches    INTEGER NOT NULL DEFAULT 0,
    exit_code   INTEGER,
    message     TEXT,
    submitted   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started     TEXT,
    finished    TEXT
) STRICT;

CREATE INDEX IF NOT EXISTS jobs_by_out ON jobs (out, state);

-- One row per thing lqd did to a job (submit, launch, adopt, requeue, done, failed, cancel):
-- the audit trail the restart test counts launches from.
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY,
    job     INTEGER NOT NULL REFERENCES jobs (id),
    event   TEXT NOT NULL,
    detail  TEXT,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

PRAGMA user_version = 1;
