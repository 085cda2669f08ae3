package sqlstore

import (
	"strings"
	"sync"
)

// Summary names a statement for a metric label, as OpenTelemetry's
// db.query.summary does: its first keyword and the table it works on,
// without any value, so that the set of labels is as small as the set of
// statements the code writes. "SELECT certificates", "INSERT audit_log",
// "UPDATE issuers", "DELETE used_tokens"; a statement naming no table is its
// keyword alone ("SELECT" for SELECT 1 or pg_advisory_xact_lock, "BEGIN",
// "COMMIT"); a WITH statement is summarised by the statement after its
// common table expressions; an unknown keyword is "OTHER". The result is
// interned: after the first time, Summary allocates nothing.
func Summary(sql string) string {
	labels.mu.RLock()
	l, ok := labels.bySQL[sql]
	labels.mu.RUnlock()
	if ok {
		return l
	}
	verb, table := summarize(sql)
	l = labels.get("", verb, table)
	labels.mu.Lock()
	if len(labels.bySQL) < maxStatements {
		labels.bySQL[sql] = l
	}
	labels.mu.Unlock()
	return l
}

// BatchSummary summarises a batch (a pipeline) by the Summary of the
// statement that tells what it does: "BATCH " and op ("BATCH INSERT
// certificates"), interned.
func BatchSummary(op string) string {
	return labels.get("BATCH ", op, "")
}

// TableSummary is the summary of a statement with keyword verb (one of the
// upper-case keywords Summary knows, such as "COPY") on table.
func TableSummary(verb, table string) string {
	if !isIdentifier(table) {
		table = ""
	}
	return labels.get("", canonicalVerb(verb), table)
}

// verbs are the statement keywords a summary may start with.
var verbs = []string{
	"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "VALUES",
	"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE",
	"COPY", "ANALYZE", "VACUUM", "SET", "RESET", "SHOW", "LOCK", "TRUNCATE",
	"CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "PRAGMA", "EXPLAIN", "DO",
	"CALL", "LISTEN", "NOTIFY", "UNLISTEN", "DISCARD", "DEALLOCATE", "PREPARE",
	"EXECUTE", "CONNECT",
}

// canonicalVerb is the upper-case keyword word stands for, or "OTHER".
func canonicalVerb(word string) string {
	for _, v := range verbs {
		if strings.EqualFold(word, v) {
			return v
		}
	}
	return "OTHER"
}

// summarize finds sql's keyword (canonical) and the table it works on ("" if
// none), as substrings of sql or constants: it allocates nothing.
func summarize(sql string) (verb, table string) {
	lx := lexer{s: sql}
	tok, _ := lx.next()
	verb = canonicalVerb(tok)
	if tok == "" || verb == "OTHER" {
		return "OTHER", ""
	}
	if verb == "WITH" {
		// The statement proper is the first of these at depth 0 after
		// the common table expressions.
		verb = ""
		for tok, depth := lx.next(); tok != ""; tok, depth = lx.next() {
			if depth == 0 {
				if v := canonicalVerb(tok); v == "SELECT" || v == "INSERT" || v == "UPDATE" || v == "DELETE" {
					verb = v
					break
				}
			}
		}
		if verb == "" {
			return "WITH", ""
		}
	}
	var after string // the keyword the table follows
	switch verb {
	case "SELECT", "DELETE":
		after = "FROM"
	case "INSERT", "REPLACE":
		after = "INTO"
	case "UPDATE", "COPY", "ANALYZE", "TRUNCATE", "LOCK":
		// The table is the next word, after OR <conflict> (SQLite) or
		// ONLY / TABLE (Postgres).
		for tok, depth := lx.next(); tok != ""; tok, depth = lx.next() {
			switch {
			case strings.EqualFold(tok, "OR"):
				lx.next()
			case strings.EqualFold(tok, "ONLY"), strings.EqualFold(tok, "TABLE"):
			default:
				return verb, identifierOr(tok, depth)
			}
		}
		return verb, ""
	default:
		return verb, ""
	}
	for tok, depth := lx.next(); tok != ""; tok, depth = lx.next() {
		if depth == 0 && strings.EqualFold(tok, after) {
			return verb, identifierOr(lx.next())
		}
	}
	return verb, ""
}

// identifierOr is tok if it is a table name at depth 0, else "".
func identifierOr(tok string, depth int) string {
	if depth != 0 || !isIdentifier(tok) {
		return ""
	}
	return tok
}

// isIdentifier reports a plain, possibly schema-qualified, SQL name.
func isIdentifier(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '$'):
		default:
			return false
		}
	}
	return true
}

// lexer yields the words of a statement with the parenthesis depth they
// are at, skipping comments, string literals, numbers, placeholders and
// punctuation; a quoted identifier is yielded without its quotes, and an
// opening parenthesis as the word "(" (so that "FROM (" names no table).
type lexer struct {
	s string
	i int
	d int
}

// next returns the next word and its depth, or "" at the end.
func (l *lexer) next() (string, int) {
	s := l.s
	for l.i < len(s) {
		c := s[l.i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ';':
			l.i++
		case c == '-' && l.i+1 < len(s) && s[l.i+1] == '-':
			for l.i < len(s) && s[l.i] != '\n' {
				l.i++
			}
		case c == '/' && l.i+1 < len(s) && s[l.i+1] == '*':
			end := strings.Index(s[l.i+2:], "*/")
			if end < 0 {
				l.i = len(s)
			} else {
				l.i += end + 4
			}
		case c == '\'':
			l.i++
			for l.i < len(s) {
				if s[l.i] == '\'' {
					l.i++
					if l.i < len(s) && s[l.i] == '\'' { // '' inside a literal
						l.i++
						continue
					}
					break
				}
				l.i++
			}
		case c == '"':
			end := strings.IndexByte(s[l.i+1:], '"')
			if end < 0 {
				l.i = len(s)
				return "", l.d
			}
			w := s[l.i+1 : l.i+1+end]
			l.i += end + 2
			return w, l.d
		case c == '(':
			l.i++
			l.d++
			return "(", l.d - 1
		case c == ')':
			l.i++
			if l.d > 0 {
				l.d--
			}
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			start := l.i
			for l.i < len(s) {
				c := s[l.i]
				if c == '_' || c == '.' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
					l.i++
					continue
				}
				break
			}
			return s[start:l.i], l.d
		default:
			l.i++
		}
	}
	return "", l.d
}

// maxLabels bounds the interned summaries; past it, a new (keyword, table)
// pair is summarised by its keyword alone, so that no statement can grow the
// set without bound.
const maxLabels = 512

// maxStatements bounds the statements whose summary is remembered (the
// statements the code writes are far fewer); past it, a new statement is
// summarised again on each call.
const maxStatements = 2048

// labels interns summaries so that the hot path allocates nothing, and
// remembers the summary of each statement so that it is read, not
// recomputed.
var labels = interner{m: map[labelKey]string{}, bySQL: map[string]string{}}

type labelKey struct{ prefix, verb, table string }

type interner struct {
	mu    sync.RWMutex
	m     map[labelKey]string
	bySQL map[string]string
}

func (in *interner) get(prefix, verb, table string) string {
	k := labelKey{prefix, verb, table}
	in.mu.RLock()
	l, ok := in.m[k]
	in.mu.RUnlock()
	if ok {
		return l
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if l, ok := in.m[k]; ok {
		return l
	}
	if len(in.m) >= maxLabels {
		// Keyword-only summaries are few (prefixes times verbs).
		return in.getLocked(prefix, verb, "")
	}
	l = prefix + verb
	if table != "" {
		l += " " + strings.Clone(table)
	}
	// The key must not keep the statement it was cut from alive.
	in.m[labelKey{prefix, verb, strings.Clone(table)}] = l
	return l
}

// getLocked is get of a keyword-only summary with in.mu held.
func (in *interner) getLocked(prefix, verb, table string) string {
	k := labelKey{prefix, verb, table}
	if l, ok := in.m[k]; ok {
		return l
	}
	l := prefix + verb
	in.m[k] = l
	return l
}
