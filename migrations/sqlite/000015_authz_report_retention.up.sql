-- PruneAuthzReportCounts (retention.authz_reports): the oldest minutes first.
CREATE INDEX authz_report_counts_minute_idx ON authz_report_counts (minute);
