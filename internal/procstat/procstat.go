// Package procstat reads a process's CPU time and memory, and the CPU of the
// machine's postgres processes, from /proc (Linux): the one reading cmd/ca-load
// and the store benchmarks take their CPU-per-request figures from.
package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; it
// is 100 on every Linux platform Go supports.
const clockTicks = 100

// Sample is what /proc says about one process at one moment.
type Sample struct {
	CPUSeconds float64 // utime + stime
	RSSBytes   int64   // VmRSS
	HWMBytes   int64   // VmHWM: peak RSS since start or since resetPeakRSS
}

// Read reads utime+stime from /proc/<pid>/stat and VmRSS/VmHWM from
// /proc/<pid>/status.
func Read(pid int) (Sample, error) {
	var s Sample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) is in parentheses and may contain spaces;
	// fields after the last ')' start at field 3 (state).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, errors.New("procstat: malformed stat")
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return s, errors.New("procstat: short stat")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(fields[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return s, fmt.Errorf("procstat: %w", err)
	}
	s.CPUSeconds = float64(utime+stime) / clockTicks

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS":
			s.RSSBytes = parseKB(v)
		case "VmHWM":
			s.HWMBytes = parseKB(v)
		}
	}
	return s, nil
}

func parseKB(v string) int64 {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n * 1024
}

// ResetPeakRSS resets VmHWM to the current RSS (clear_refs value 5, Linux
// 4.0+), so each scenario reports its own peak. It fails without permission
// to write the process's clear_refs; the peak is then since process start.
func ResetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// Shares is where the machine's CPU went, in seconds since boot: this
// process (Self), every process named postgres (the database's backends;
// one that exits takes its time with it) and the whole machine's busy time
// from /proc/stat. Subtract two readings (Minus) for one run's.
type Shares struct {
	Self, Postgres, Machine float64
}

// ReadShares takes one reading of Shares.
func ReadShares() Shares {
	var c Shares
	if s, err := Read(os.Getpid()); err == nil {
		c.Self = s.CPUSeconds
	}
	c.Postgres = PostgresCPU()
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		if len(f) > 5 && f[0] == "cpu" {
			var busy int64
			for i, v := range f[1:] {
				n, _ := strconv.ParseInt(v, 10, 64)
				if i != 3 && i != 4 { // idle, iowait
					busy += n
				}
			}
			c.Machine = float64(busy) / clockTicks
		}
	}
	return c
}

// Minus is c - o, share by share.
func (c Shares) Minus(o Shares) Shares {
	return Shares{Self: c.Self - o.Self, Postgres: c.Postgres - o.Postgres, Machine: c.Machine - o.Machine}
}

// PostgresCPU is the CPU seconds (user and system) of every process named
// postgres on this machine, read from /proc at 1/100 s resolution.
func PostgresCPU() float64 {
	var total float64
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		if s, err := Read(pid); err == nil {
			total += s.CPUSeconds
		}
	}
	return total
}
