package wrap

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkPreloadable returns why LD_PRELOAD could not move the bind of
// listenPort made by the program at path (as found in $PATH), or nil when
// nothing says so. Such a program would bind the port websockify listens
// on itself and fail, or worse, race websockify for it.
//
// The dynamic loader ignores LD_PRELOAD in a statically linked program and
// in one it runs in secure-execution mode (setuid or setgid to someone else,
// or with file capabilities); Go programs make their system calls
// directly, never through libc's bind. A script is judged by its
// interpreter. Known false alarm: a static launcher (a static busybox sh,
// say) whose dynamic child does the binding would have been moved.
func checkPreloadable(program string, listenPort int) error {
	path, err := exec.LookPath(program)
	if err != nil {
		return err
	}
	return checkFile(program, path, listenPort, os.Getuid(), os.Getgid(), 0)
}

// checkFile checks the executable at path for checkPreloadable, as seen by
// a process whose real user and group are uid and gid. depth counts the
// interpreters followed, which the kernel also bounds.
func checkFile(program, path string, listenPort, uid, gid, depth int) error {
	if depth > 4 {
		return nil
	}
	if interp := scriptInterpreter(path); interp != "" {
		// The kernel ignores set-id bits on scripts; the interpreter is the
		// process the loader preloads into.
		return checkFile(program, interp, listenPort, uid, gid, depth+1)
	}
	name := program
	if path != program {
		name = fmt.Sprintf("%s (%s)", program, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil // exec reports it
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if st.Mode()&os.ModeSetuid != 0 && int(sys.Uid) != uid {
			return fmt.Errorf("%s is setuid (to user %d): the dynamic loader ignores LD_PRELOAD for it, so rebind.so cannot move its bind of port %d, the port websockify listens on", name, sys.Uid, listenPort)
		}
		if st.Mode()&os.ModeSetgid != 0 && int(sys.Gid) != gid {
			return fmt.Errorf("%s is setgid (to group %d): the dynamic loader ignores LD_PRELOAD for it, so rebind.so cannot move its bind of port %d, the port websockify listens on", name, sys.Gid, listenPort)
		}
	}
	if size, err := unix.Getxattr(path, "security.capability", nil); err == nil && size > 0 {
		return fmt.Errorf("%s has file capabilities: the dynamic loader ignores LD_PRELOAD for it, so rebind.so cannot move its bind of port %d, the port websockify listens on", name, listenPort)
	}
	f, err := elf.Open(path)
	if err != nil {
		return nil // not ELF: nothing to tell
	}
	defer f.Close()
	dynamic := false
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			dynamic = true
		}
	}
	if !dynamic {
		return fmt.Errorf("%s is statically linked: LD_PRELOAD cannot move its bind of port %d; it would take the port websockify listens on", name, listenPort)
	}
	if f.Section(".go.buildinfo") != nil {
		return fmt.Errorf("%s is a Go program: Go makes its bind system call directly, not through libc, so LD_PRELOAD cannot move its bind of port %d; it would take the port websockify listens on", name, listenPort)
	}
	return nil
}

// scriptInterpreter returns the path of the interpreter a "#!" script at
// path names ("#!/usr/bin/env NAME" looked up in $PATH), or "" for anything
// else.
func scriptInterpreter(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" || !strings.HasPrefix(line, "#!") {
		return ""
	}
	fields := strings.Fields(line[2:])
	if len(fields) == 0 || !filepath.IsAbs(fields[0]) {
		return ""
	}
	if filepath.Base(fields[0]) == "env" && len(fields) > 1 && !strings.HasPrefix(fields[1], "-") {
		found, err := exec.LookPath(fields[1])
		if err != nil {
			return ""
		}
		return found
	}
	return fields[0]
}
