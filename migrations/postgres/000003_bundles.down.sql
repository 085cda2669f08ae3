DROP TABLE IF EXISTS bundle_versions;
