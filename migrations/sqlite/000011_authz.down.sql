DROP TABLE authz_report_counts;
DROP TABLE authz_overrides;
