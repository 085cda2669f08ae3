-- Dashboard sessions, kept server-side so that a logout ends a session. The
-- browser's cookie carries a random session ID; only its SHA-256 is stored,
-- so reading this table yields no usable cookie. Times are Unix microseconds.
CREATE TABLE dashboard_sessions (
    id_hash         TEXT PRIMARY KEY NOT NULL,        -- hex SHA-256 of the session ID
    actor           TEXT NOT NULL,
    token_issuer    TEXT NOT NULL DEFAULT '',         -- policy token issuer the roles derive from; '' for the local admin
    claims          TEXT NOT NULL DEFAULT '{}',       -- the ID token's claims (JSON), to re-derive roles from the current policy
    dev             INTEGER NOT NULL DEFAULT 0,       -- the development setup's local admin
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,                 -- absolute end
    idle_expires_at INTEGER NOT NULL,                 -- idle end, never after expires_at
    CHECK (idle_expires_at <= expires_at)
);

-- PruneSessions (idle_expires_at <= expires_at, so it alone says expired).
CREATE INDEX dashboard_sessions_idle_idx ON dashboard_sessions (idle_expires_at);
