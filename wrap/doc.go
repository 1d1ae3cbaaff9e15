// Package wrap runs the program websockify wraps (`websockify PORT --
// PROGRAM ARGS...`) and owns the two pieces that takes: rebind.so, the
// LD_PRELOAD library that moves the program's bind of PORT to a free
// loopback port (its C source is embedded and built on demand when no
// built copy is installed), and the goroutine that supervises the program:
// it starts it in its own process group, restarts or reports it when it
// ends (the --wrap-mode exit, ignore and respawn of the original), and
// stops the whole group when websockify stops.
//
// Linux only, like the rest of websockify: the supervisor relies on
// process groups and Pdeathsig, and WaitListening reads /proc/net.
package wrap
