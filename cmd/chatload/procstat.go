package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is the CPU time and resident memory of one process.
type procSample struct {
	CPUSeconds float64 `json:"cpu_seconds"` // utime + stime
	SysSeconds float64 `json:"sys_seconds"` // stime (kernel)
	RSSBytes   int64   `json:"rss_bytes"`
	// WriteCalls is syscw from /proc/<pid>/io: the process's write system calls (0 when
	// the file cannot be read).
	WriteCalls uint64 `json:"write_calls"`
}

// readProc reads /proc/<pid>/stat (utime, stime) and /proc/<pid>/status (VmRSS).
// pid 0 means this process.
func readProc(pid int) (procSample, error) {
	dir := "/proc/self"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return procSample{}, err
	}
	// The command name is in parentheses and may contain spaces: fields count from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procSample{}, fmt.Errorf("%s/stat: unexpected format", dir)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return procSample{}, fmt.Errorf("%s/stat: unexpected format", dir)
	}
	// After ')': state(3) ppid ... utime is field 14, stime 15 (1-based in proc(5)).
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procSample{}, fmt.Errorf("%s/stat: bad utime/stime", dir)
	}
	s := procSample{CPUSeconds: float64(ut+st) / clockTicks, SysSeconds: float64(st) / clockTicks}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return procSample{}, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return procSample{}, fmt.Errorf("%s/status: bad VmRSS", dir)
			}
			s.RSSBytes = kb << 10
		}
	}
	s.WriteCalls = readSyscw(dir)
	return s, nil
}

// readSyscw reads syscw from dir/io; 0 if it cannot.
func readSyscw(dir string) uint64 {
	io, err := os.ReadFile(dir + "/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(io), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// readProcs sums the samples of pids.
func readProcs(pids []int) (procSample, error) {
	var sum procSample
	for _, pid := range pids {
		s, err := readProc(pid)
		if err != nil {
			return sum, fmt.Errorf("server pid %d: %w", pid, err)
		}
		sum.CPUSeconds += s.CPUSeconds
		sum.SysSeconds += s.SysSeconds
		sum.RSSBytes += s.RSSBytes
		sum.WriteCalls += s.WriteCalls
	}
	return sum, nil
}
