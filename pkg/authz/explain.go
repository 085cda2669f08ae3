package authz

import "strings"

// ExplainRow is one line of `ca authz explain`: one endpoint of one service
// and who may call it.
type ExplainRow struct {
	Service   string
	Identity  string
	Endpoint  string
	Methods   string
	Paths     string
	Callers   string // the allow list as written
	Mode      string
	Condition string // the `when` condition, "" if none
}

// Explain lists, in policy order (services sorted), every endpoint of the
// named service ("" = all) that source may call according to its allow list
// ("" = any caller; the endpoint's condition is shown, not evaluated).
func (p *Policy) Explain(service, source string) []ExplainRow {
	var rows []ExplainRow
	for _, name := range p.names {
		if service != "" && name != service {
			continue
		}
		s := p.services[name]
		sf := p.raw.Services[name]
		for i, ep := range s.endpoints {
			if source != "" && !ep.allow.allows(source) {
				continue
			}
			ef := sf.Endpoints[i]
			cond := ef.When
			if len(ef.Headers) > 0 {
				cond += " [headers: " + strings.Join(ef.Headers, ", ") + "]"
			}
			rows = append(rows, ExplainRow{
				Service: name, Identity: s.identity, Endpoint: ep.name,
				Methods: strings.Join(ef.Methods, ","), Paths: strings.Join(ef.Paths, " "),
				Callers: strings.Join(ef.Allow, " "), Mode: s.mode, Condition: cond,
			})
		}
	}
	return rows
}
