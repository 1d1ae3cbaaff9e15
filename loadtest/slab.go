package main

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Kernel memory of held sessions, from /proc/slabinfo (readable by root
// only). At 100,000 sessions the kernel holds more for them than the proxy
// does: every session has four TCP sockets on this machine (client, proxy's
// two, target), each a socket inode, a file and, in the proxy and in this
// tool's holders and targets, an epoll item. The figures are therefore the
// whole path's, not the proxy's alone, which is why they are reported
// beside the proxy's user-space memory rather than added to it.

// slabGroups are the caches a held session grows, by what they are for.
// eventpoll_pwq is absent on kernels that merge it into a same-sized cache.
var slabGroups = []struct {
	name   string
	caches []string
}{
	{"tcp", []string{"TCP", "TCPv6", "request_sock_TCP", "request_sock_TCPv6"}},
	{"files", []string{"sock_inode_cache", "filp", "dentry"}},
	{"epoll", []string{"eventpoll_epi", "eventpoll_pwq"}},
}

// slabSnapshot is the memory of each slab cache, in bytes: its slabs'
// pages, so partly filled slabs count whole, as they do in the machine's
// memory.
type slabSnapshot map[string]int64

// readSlabinfo reads /proc/slabinfo; nil when it cannot (not root).
func readSlabinfo() slabSnapshot {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return nil
	}
	page := int64(os.Getpagesize())
	s := slabSnapshot{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, "slabinfo") {
			continue
		}
		// name active num objsize perslab pagesperslab : tunables l b s : slabdata active_slabs num_slabs shared
		f := strings.Fields(line)
		if len(f) < 16 {
			continue
		}
		pagesPerSlab, err1 := strconv.ParseInt(f[5], 10, 64)
		slabs, err2 := strconv.ParseInt(f[14], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		s[f[0]] = slabs * pagesPerSlab * page
	}
	return s
}

// slabUse is the growth of the kernel's slab caches over a hold, per
// session held.
type slabUse struct {
	TCP    float64 `json:"tcp"`     // TCP socket structures
	Files  float64 `json:"files"`   // socket inodes, open files, dentries
	Epoll  float64 `json:"epoll"`   // epoll items
	Total  float64 `json:"total"`   // the three above
	AllSum float64 `json:"all_sum"` // every slab cache, other activity on the machine included

	Before slabSnapshot `json:"before"` // the grouped caches only
	After  slabSnapshot `json:"after"`
}

// slabPerSession is (after - before) / n by group; nil without both readings.
func slabPerSession(before, after slabSnapshot, n int) *slabUse {
	if before == nil || after == nil || n <= 0 {
		return nil
	}
	u := &slabUse{Before: slabSnapshot{}, After: slabSnapshot{}}
	f := float64(n)
	for _, g := range slabGroups {
		var d int64
		for _, c := range g.caches {
			d += after[c] - before[c]
			if _, ok := after[c]; ok {
				u.Before[c], u.After[c] = before[c], after[c]
			}
		}
		per := float64(d) / f
		switch g.name {
		case "tcp":
			u.TCP = per
		case "files":
			u.Files = per
		case "epoll":
			u.Epoll = per
		}
		u.Total += per
	}
	var all int64
	for c, v := range after {
		all += v - before[c]
	}
	for c, v := range before {
		if _, ok := after[c]; !ok {
			all -= v
		}
	}
	u.AllSum = float64(all) / f
	return u
}
