package server

import (
	"context"
	"log/slog"
	"net/http"
)

// DecisionLogMessage is the msg of the one log line every enroll, renew,
// jwt, revoke and operator-authorisation decision writes, allowed or denied.
const DecisionLogMessage = "decision"

// decisionLine is one decision as an incident responder reads it in the log.
// It never carries a token, a key or a certificate: only names, serials and
// reason codes.
type decisionLine struct {
	action   string // enroll, renew, jwt, revoke, authz
	decision string // allow or deny
	reason   string // the problem+json reason of a denial ("" when allowed)
	status   int    // the HTTP status answered
	// source is who asked: the token subject, the client certificate's
	// SPIFFE ID, the operator, or "anonymous".
	source string
	// destination is what was asked for: the SPIFFE ID to be certified,
	// the JWT audience, the serial to revoke, the operator route.
	destination   string
	serial        string // the certificate issued, renewed, presented or revoked
	issuer        string // the CA (or JWT key id) that signed, when known
	rule          string // the policy rule that matched, when one did
	policyVersion string
	tokenIssuer   string // the token issuer the credential came from
	renewedFrom   string // the serial a renewal replaces
	detail        string // a short explanation of a denial, never a secret
}

// logDecision writes d as the one DecisionLogMessage line of the request,
// with its request id and client address. Denials log at warn level if the
// CA itself failed (5xx), else at info.
func logDecision(ctx context.Context, log *slog.Logger, r *http.Request, d decisionLine) {
	if log == nil {
		return
	}
	level := slog.LevelInfo
	if d.status >= 500 {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("action", d.action),
		slog.String("decision", d.decision),
		slog.String("reason", d.reason),
		slog.String("source", d.source),
		slog.String("destination", d.destination),
		slog.String("serial", d.serial),
		slog.String("issuer", d.issuer),
		slog.String("rule", d.rule),
		slog.String("policy_version", d.policyVersion),
		slog.String("request_id", RequestID(ctx)),
		slog.Int("status", d.status),
	}
	if d.tokenIssuer != "" {
		attrs = append(attrs, slog.String("token_issuer", d.tokenIssuer))
	}
	if d.renewedFrom != "" {
		attrs = append(attrs, slog.String("renewed_from", d.renewedFrom))
	}
	if d.detail != "" {
		attrs = append(attrs, slog.String("detail", clip(d.detail, 512)))
	}
	if r != nil {
		attrs = append(attrs, slog.String("remote", r.RemoteAddr))
	}
	log.LogAttrs(ctx, level, DecisionLogMessage, attrs...)
}
