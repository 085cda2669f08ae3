package sqlite

import "testing"

func TestRebindNumbersSQLitePlaceholders(t *testing.T) {
	tests := []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`WHERE id = $1 AND until > $2 OR until > $2`, `WHERE id = ?1 AND until > ?2 OR until > ?2`},
		{`VALUES ($10, $11)`, `VALUES (?10, ?11)`},
		{`json_extract(details, '$.x') = $1`, `json_extract(details, '$.x') = ?1`},
		{`trailing $`, `trailing $`},
	}
	for _, tt := range tests {
		if got := rebind(tt.in); got != tt.want {
			t.Errorf("rebind(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJSONArrayOfNoStringsIsEmpty(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{nil, `[]`},
		{[]string{}, `[]`},
		{[]string{`a"b`, `c`}, `["a\"b","c"]`},
	} {
		if got := jsonArray(tt.in); got != tt.want {
			t.Errorf("jsonArray(%q) = %v, want %s", tt.in, got, tt.want)
		}
	}
}
