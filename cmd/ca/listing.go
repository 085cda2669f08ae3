package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// The listings of the operator commands (ca issuers list, ca bundle
// versions, ca jwt-keys list, ca authz overrides list): aligned columns
// under a header line, "-" for an empty value.

// table is a tabwriter on w for a listing, its header line already written.
func table(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// timeOrDash is t in RFC 3339, or "-" when it is zero.
func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}
