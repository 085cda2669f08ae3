//go:build cgo

package hsm

import "sync"

// moduleUsers counts the crypto11 contexts this process has open per module
// path. crypto11 initialises a module when its first context opens and
// finalizes it when the last one closes; the count mirrors that state.
var moduleUsers = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

func moduleUse(path string, delta int) {
	moduleUsers.Lock()
	defer moduleUsers.Unlock()
	moduleUsers.n[path] += delta
	if moduleUsers.n[path] <= 0 {
		delete(moduleUsers.n, path)
	}
}

// ModuleInUse reports whether a PKCS11Store in this process holds the PKCS#11
// module at path initialised. Some modules, SoftHSM among them, only see
// tokens that existed when they were initialised; test fixtures use this to
// create tokens only while no context is open.
func ModuleInUse(path string) bool {
	moduleUsers.Lock()
	defer moduleUsers.Unlock()
	return moduleUsers.n[path] > 0
}

// HoldModuleIdle is ModuleInUse for a caller about to create tokens that the
// module at path must see (test fixtures, on SoftHSM): when no PKCS11Store of
// this process holds the module, it returns ok and keeps any store from
// starting to initialise it until release is called (a store that opens or
// reconnects meanwhile waits before its C_Initialize), so the tokens created
// in between exist when the module next initialises. Not ok: a store holds
// the module; nothing is held.
func HoldModuleIdle(path string) (release func(), ok bool) {
	moduleUsers.Lock()
	if moduleUsers.n[path] > 0 {
		moduleUsers.Unlock()
		return nil, false
	}
	return moduleUsers.Unlock, true
}
