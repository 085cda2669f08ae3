-- Dashboard sessions, kept server-side so that every replica sees the same
-- sign-ins and a logout ends a session everywhere. The browser's cookie
-- carries a random session ID; only its SHA-256 is stored, so reading this
-- table yields no usable cookie.
CREATE TABLE dashboard_sessions (
    id_hash         text PRIMARY KEY,                 -- hex SHA-256 of the session ID
    actor           text NOT NULL,
    token_issuer    text NOT NULL DEFAULT '',         -- policy token issuer the roles derive from; '' for the local admin
    claims          text NOT NULL DEFAULT '{}',       -- the ID token's claims (JSON), to re-derive roles from the current policy
    dev             boolean NOT NULL DEFAULT false,   -- the development setup's local admin
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,             -- absolute end
    idle_expires_at timestamptz NOT NULL,             -- idle end, never after expires_at
    CHECK (idle_expires_at <= expires_at)
);

-- PruneSessions (idle_expires_at <= expires_at, so it alone says expired).
CREATE INDEX dashboard_sessions_idle_idx ON dashboard_sessions (idle_expires_at);
