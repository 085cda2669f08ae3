//go:build !unix

package hsm

// noFollow is not available here; loadKeyFile still refuses non-regular files.
const noFollow = 0
