-- workload-ca schema v11 (SQLite): service-to-service authorization (issue 19).
-- Times are INTEGER unix microseconds, UTC.
--
-- authz_overrides: emergency overrides. An admin requests one (pending); a
-- different admin approves it (active from approved_at until `until` =
-- approved_at + ttl); anyone with admin ends it early. The state is derived
-- from these columns and the caller's clock, never stored.
CREATE TABLE authz_overrides (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    service      TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    ttl_us       INTEGER NOT NULL CHECK (ttl_us > 0 AND ttl_us <= 86400000000),
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    approved_by  TEXT,
    approved_at  INTEGER,
    until        INTEGER,
    ended_by     TEXT,
    ended_at     INTEGER,
    CHECK ((approved_at IS NULL) = (approved_by IS NULL)),
    CHECK ((approved_at IS NULL) = (until IS NULL)),
    CHECK ((ended_at IS NULL) = (ended_by IS NULL)),
    CHECK (approved_by IS NULL OR approved_by <> requested_by)
);

-- ActiveAuthzOverrides (every policy fetch and decision): the approved,
-- not ended overrides of one service, by end.
CREATE INDEX authz_overrides_service_idx ON authz_overrides (service, until) WHERE approved_at IS NOT NULL AND ended_at IS NULL;
-- ListAuthzOverrides: newest requests first.
CREATE INDEX authz_overrides_requested_idx ON authz_overrides (requested_at DESC, id DESC);

-- authz_report_counts: per-minute aggregates of the decision counts services
-- report (POST /v1/authz/reports). AddAuthzReportCounts adds into the row of
-- (service, minute, source, endpoint, decision, reason).
CREATE TABLE authz_report_counts (
    service  TEXT NOT NULL,
    minute   INTEGER NOT NULL,
    source   TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason   TEXT NOT NULL,
    count    INTEGER NOT NULL CHECK (count >= 0),
    -- The upsert's conflict target; ListAuthzReportCounts (service and a
    -- minute range) uses its leading columns.
    PRIMARY KEY (service, minute, source, endpoint, decision, reason)
);
