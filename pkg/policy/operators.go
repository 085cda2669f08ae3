package policy

// OperatorIssuer tells whether tokens of the named token issuer can make
// someone an operator: some `roles:` entry refers to it. A verified token of
// any other issuer (an enrollment-only issuer such as a CI provider) is not an
// operator credential at all, whatever its claims, and the HTTP edge answers
// it as unauthenticated rather than as an operator without a role.
func (p *Policy) OperatorIssuer(name string) bool {
	for _, r := range p.roles {
		if r.issuer != "" && r.issuer == name {
			return true
		}
	}
	return false
}
