package hsm

import "fmt"

// maxNameLen bounds key names so they fit a PKCS#11 label and a file name.
const maxNameLen = 128

// validateName checks a key name against the rule both stores share: 1 to 128
// characters of [A-Za-z0-9._-], starting with a letter or digit. The first-
// character rule excludes ".", ".." and hidden or temporary files, so a valid
// name is always a plain file name inside the key directory.
func validateName(name string) error {
	if len(name) == 0 || len(name) > maxNameLen {
		return fmt.Errorf("%w: length %d is outside 1..%d", ErrBadName, len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && (c == '.' || c == '_' || c == '-') {
			continue
		}
		return fmt.Errorf("%w: %q has a forbidden character at offset %d", ErrBadName, name, i)
	}
	return nil
}
