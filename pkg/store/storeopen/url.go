package storeopen

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBadURL means a database URL has no scheme this binary knows, or cannot
// be parsed. Its messages never quote the URL, which may hold a password.
var ErrBadURL = errors.New("storeopen: unusable database URL (want postgres://..., postgresql://... or sqlite:PATH)")

// Kind names a database implementation.
type Kind string

// The implementations a URL can select.
const (
	Postgres Kind = "postgres"
	SQLite   Kind = "sqlite"
)

// target is a parsed database URL.
type target struct {
	kind Kind
	dsn  string // the postgres URL as given, or the SQLite file path
}

// KindOf tells which implementation a URL selects, or ErrBadURL.
func KindOf(rawURL string) (Kind, error) {
	t, err := parse(rawURL)
	return t.kind, err
}

// parse accepts postgres://, postgresql://, sqlite:PATH and sqlite://PATH
// (sqlite:///abs/path is the absolute /abs/path).
func parse(rawURL string) (target, error) {
	switch {
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		if _, err := url.Parse(rawURL); err != nil {
			// url.Parse quotes its input; say only what is wrong.
			return target{}, fmt.Errorf("%w: malformed postgres URL", ErrBadURL)
		}
		return target{kind: Postgres, dsn: rawURL}, nil
	case strings.HasPrefix(rawURL, "sqlite://"):
		return sqlitePath(strings.TrimPrefix(rawURL, "sqlite://"))
	case strings.HasPrefix(rawURL, "sqlite:"):
		return sqlitePath(strings.TrimPrefix(rawURL, "sqlite:"))
	}
	return target{}, ErrBadURL
}

func sqlitePath(path string) (target, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return target{}, fmt.Errorf("%w: sqlite needs a file path without ? or #", ErrBadURL)
	}
	return target{kind: SQLite, dsn: path}, nil
}

// SQLitePath is the database file a sqlite: URL names, or ErrBadURL for a
// URL that is not one.
func SQLitePath(rawURL string) (string, error) {
	t, err := parse(rawURL)
	if err != nil {
		return "", err
	}
	if t.kind != SQLite {
		return "", fmt.Errorf("%w: not a sqlite URL", ErrBadURL)
	}
	return t.dsn, nil
}
