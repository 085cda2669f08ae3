// Package jsonappend writes JSON byte for byte as encoding/json's Marshal
// does (HTML-safe string escaping, map keys in byte order, ES6 number
// formatting), appended to a caller's buffer and without reflection, for
// the answers and records written on every enrollment: json.Marshal of a
// decoded token's claims (a map[string]any) copies and sorts every entry
// by reflection, which made the provenance one of the larger costs of an
// enrollment outside signing. Its tests hold it to json.Marshal.
package jsonappend
