#!/bin/sh
# First start (empty PGDATA): initdb with POSTGRES_USER as the superuser and
# POSTGRES_PASSWORD (or the content of POSTGRES_PASSWORD_FILE) as its
# password, create POSTGRES_DB, allow scram-sha-256 from the network; then,
# like every later start, run the server in the foreground. This is the part
# of the official image's entrypoint that docker-compose.yml relies on.
set -eu
if [ $# -gt 0 ] && [ "$1" != postgres ]; then exec "$@"; fi
[ $# -eq 0 ] || shift

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		echo "docker-entrypoint: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set" >&2
		exit 1
	fi
	POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "docker-entrypoint: the database is uninitialised and no POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is given" >&2
		exit 1
	fi
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
	initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
	rm -f "$pwfile"
	echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
	# A server on the Unix socket only, so that nobody connects before the
	# database exists.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
	if [ "$db" != postgres ]; then
		createdb --username="$user" --owner="$user" "$db"
	fi
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	echo "docker-entrypoint: initialised $PGDATA (user $user, database $db)"
fi
unset POSTGRES_PASSWORD
exec postgres -c listen_addresses='*' "$@"
