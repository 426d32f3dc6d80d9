-- liftquant calibration store: one SQLite file per run directory (DESIGN.md §3, §4).
--
-- This file is the only copy of the schema: coordinator/CMakeLists.txt embeds it into
-- lq_coordinator, and lq_store_open() runs it inside one BEGIN IMMEDIATE transaction on every
-- open, so every statement must be idempotent (IF NOT EXISTS) and allowed inside a transaction
-- (journal_mode and foreign_keys are set by store.c, not here).
--
-- The last statement sets the schema version; CMake reads the number from it. A database with
-- a different version is refused rather than guessed at: bump the number and teach store.c the
-- migration whenever a table changes shape.
--
-- Conventions: STRICT tables, so a value of the wrong type is an error instead of being kept
-- as text. Sizes and checksums are uint64 in C and INTEGER here; a checksum is stored as the
-- signed 64-bit reinterpretation of its bits, so it may read negative in the sqlite3 shell
-- (printf('%016x', checksum) shows it as lq-inspect does). Times are UTC ISO-8601 text, which
-- sorts and reads well in the shell and julianday() understands.

CREATE TABLE IF NOT EXISTS runs (
    id       INTEGER PRIMARY KEY,
    -- a hash of everything that determines the results (model file, calibration settings,
    -- seed): the same command finds its run again and resumes it
    key      TEXT NOT NULL UNIQUE CONSTRAINT run_key_not_empty CHECK (length(key) > 0),
    model    TEXT NOT NULL,
    settings TEXT NOT NULL CONSTRAINT run_settings_is_json CHECK (json_valid(settings)),
    created  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

-- The linears a run quantizes, numbered 0..n-1 by the run; results and assignments refer to
-- them by that index.
CREATE TABLE IF NOT EXISTS tensors (
    run          INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    tensor       INTEGER NOT NULL CONSTRAINT tensor_index_not_negative CHECK (tensor >= 0),
    name         TEXT NOT NULL CONSTRAINT tensor_name_not_empty CHECK (length(name) > 0),
    -- the transformer block; -1 for a linear outside the blocks (an LM head)
    layer        INTEGER NOT NULL CONSTRAINT tensor_layer_valid CHECK (layer >= -1),
    out_features INTEGER NOT NULL CONSTRAINT tensor_out_positive CHECK (out_features > 0),
    in_features  INTEGER NOT NULL CONSTRAINT tensor_in_positive CHECK (in_features > 0),
    PRIMARY KEY (run, tensor),
    UNIQUE (run, name)
) STRICT;

-- One candidate: tensor × config, measured. UNIQUE(run, tensor, config) is what makes a
-- restarted job skip finished work; putting the same key again replaces the row.
CREATE TABLE IF NOT EXISTS results (
    run           INTEGER NOT NULL,
    tensor        INTEGER NOT NULL,
    -- fits lq_store_result.config (char[16] with its terminator)
    config        TEXT NOT NULL CONSTRAINT result_config_length
                      CHECK (length(CAST(config AS BLOB)) BETWEEN 1 AND 15),
    rel_error     REAL NOT NULL CONSTRAINT result_rel_error_not_negative CHECK (rel_error >= 0),
    out_energy    REAL NOT NULL CONSTRAINT result_out_energy_not_negative CHECK (out_energy >= 0),
    stream_energy REAL NOT NULL CONSTRAINT result_stream_energy_not_negative
                      CHECK (stream_energy >= 0),
    code_bytes    INTEGER NOT NULL CONSTRAINT result_code_bytes_not_negative CHECK (code_bytes >= 0),
    side_bytes    INTEGER NOT NULL CONSTRAINT result_side_bytes_not_negative CHECK (side_bytes >= 0),
    seconds       REAL NOT NULL CONSTRAINT result_seconds_not_negative CHECK (seconds >= 0),
    host          TEXT NOT NULL CONSTRAINT result_host_length
                      CHECK (length(CAST(host AS BLOB)) <= 63),
    -- relative to the store's directory, so a run directory can be moved or mounted elsewhere
    blob          TEXT NOT NULL CONSTRAINT result_blob_relative
                      CHECK (length(CAST(blob AS BLOB)) BETWEEN 1 AND 255 AND substr(blob, 1, 1) <> '/'),
    checksum      INTEGER NOT NULL,
    -- when this row was last written (a replaced result gets the replacement's time)
    created       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (run, tensor, config),
    FOREIGN KEY (run, tensor) REFERENCES tensors (run, tensor) ON DELETE CASCADE
) STRICT;

-- A solved budget: the solver's figures for (run, budget, error measure). The chosen configs
-- are in assignments; solving the same key again replaces both.
CREATE TABLE IF NOT EXISTS solves (
    run          INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    budget_bytes INTEGER NOT NULL CONSTRAINT solve_budget_not_negative CHECK (budget_bytes >= 0),
    measure      TEXT NOT NULL CONSTRAINT solve_measure_not_empty CHECK (length(measure) > 0),
    used_bytes   INTEGER NOT NULL CONSTRAINT solve_used_within_budget
                     CHECK (used_bytes >= 0 AND used_bytes <= budget_bytes),
    objective    REAL NOT NULL CONSTRAINT solve_objective_not_negative CHECK (objective >= 0),
    lower_bound  REAL NOT NULL,
    -- the output directory written from this assignment; NULL when none was written
    out_path     TEXT,
    created      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (run, budget_bytes, measure)
) STRICT;

-- The config chosen for each tensor by a solve. No foreign key to results: deleting a result
-- whose blob went bad (to recompute it) must not silently edit or block a recorded decision;
-- docs/CALIBRATE.md shows the query that finds assignments whose result is gone.
CREATE TABLE IF NOT EXISTS assignments (
    run          INTEGER NOT NULL,
    budget_bytes INTEGER NOT NULL,
    measure      TEXT NOT NULL,
    tensor       INTEGER NOT NULL,
    config       TEXT NOT NULL CONSTRAINT assignment_config_length
                     CHECK (length(CAST(config AS BLOB)) BETWEEN 1 AND 15),
    PRIMARY KEY (run, budget_bytes, measure, tensor),
    FOREIGN KEY (run, budget_bytes, measure) REFERENCES solves (run, budget_bytes, measure)
        ON DELETE CASCADE,
    FOREIGN KEY (run, tensor) REFERENCES tensors (run, tensor) ON DELETE CASCADE
) STRICT;

-- child-key indexes, so deleting or checking a parent row is not a table scan
CREATE INDEX IF NOT EXISTS assignments_by_tensor ON assignments (run, tensor);

PRAGMA user_version = 1;
