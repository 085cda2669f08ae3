//go:build unix

package hsm

import "syscall"

// noFollow makes opening a key file fail on a symlink.
const noFollow = syscall.O_NOFOLLOW
