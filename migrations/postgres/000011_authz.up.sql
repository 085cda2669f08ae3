-- workload-ca schema v11 (Postgres): service-to-service authorization (issue 19).
--
-- authz_overrides: emergency overrides. An admin requests one (pending); a
-- different admin approves it (active from approved_at until `until` =
-- approved_at + ttl); anyone with admin ends it early. The state is derived
-- from these columns and the caller's clock, never stored.
CREATE TABLE authz_overrides (
    id           text COLLATE "C" PRIMARY KEY,
    source       text COLLATE "C" NOT NULL,
    service      text COLLATE "C" NOT NULL,
    endpoint     text NOT NULL,
    reason       text NOT NULL,
    ttl_us       bigint NOT NULL CHECK (ttl_us > 0 AND ttl_us <= 86400000000),
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL,
    approved_by  text,
    approved_at  timestamptz,
    until        timestamptz,
    ended_by     text,
    ended_at     timestamptz,
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
    service  text COLLATE "C" NOT NULL,
    minute   timestamptz NOT NULL,
    source   text COLLATE "C" NOT NULL,
    endpoint text COLLATE "C" NOT NULL,
    decision text COLLATE "C" NOT NULL,
    reason   text COLLATE "C" NOT NULL,
    count    bigint NOT NULL CHECK (count >= 0),
    -- The upsert's conflict target; ListAuthzReportCounts (service and a
    -- minute range) uses its leading columns.
    PRIMARY KEY (service, minute, source, endpoint, decision, reason)
);
