package main

import (
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"time"
)

// The soak's verified traffic: the target that serves it, and the echo,
// bulk and churn workers that drive it and check every byte.

// serveSoak is the soak target: the first byte picks echo, download or upload.
func serveSoak(c net.Conn) {
	defer c.Close()
	var hdr [17]byte
	if _, err := io.ReadFull(c, hdr[:1]); err != nil {
		return
	}
	if hdr[0] == opEcho {
		serveEcho(c)
		return
	}
	if _, err := io.ReadFull(c, hdr[1:]); err != nil {
		return
	}
	seed, n := binary.BigEndian.Uint64(hdr[1:9]), int64(binary.BigEndian.Uint64(hdr[9:]))
	src := stream(seed)
	buf := make([]byte, 64<<10)
	switch hdr[0] {
	case opDown:
		for n > 0 {
			chunk := buf[:min(int64(len(buf)), n)]
			_, _ = src.Read(chunk)
			if _, err := c.Write(chunk); err != nil {
				return
			}
			n -= int64(len(chunk))
		}
	case opUp:
		want := make([]byte, len(buf))
		var bad int64
		for n > 0 {
			r, err := c.Read(buf[:min(int64(len(buf)), n)])
			if r > 0 {
				_, _ = src.Read(want[:r])
				bad += diffCount(buf[:r], want[:r])
				n -= int64(r)
			}
			if err != nil {
				return
			}
		}
		if _, err := c.Write(binary.BigEndian.AppendUint64(nil, uint64(bad))); err != nil {
			return
		}
	default:
		return
	}
	// The client closes once it has everything; closing first could cut the
	// last bytes off with a reset.
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	_, _ = io.Copy(io.Discard, c)
}

// echoWorker keeps one long-lived echo session open at a time, sending
// pseudo-random messages of 1 B to 256 KiB and checking every echoed byte.
func (r *soakRun) echoWorker(id uint64, b64 bool) {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 100+id))
	src := stream(r.cfg.seed ^ (id << 20))
	// Stagger the start so the sessions do not all open in the same second.
	if !r.pause(time.Duration(rng.Int64N(int64(min(r.cfg.duration/10, 2*time.Second)) + 1))) {
		return
	}
	for !r.stopping() {
		life := r.cfg.lifeMin + time.Duration(rng.Int64N(int64(r.cfg.lifeMax-r.cfg.lifeMin)+1))
		if err := r.echoSession(rng, src, b64, r.wantWSS(rng), time.Now().Add(life)); err != nil {
			r.pause(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		}
	}
}

func (r *soakRun) echoSession(rng *mrand.Rand, src io.Reader, b64, wss bool, until time.Time) error {
	c, e, err := r.dial(b64, wss)
	if err != nil {
		r.ended("echo-open", err, e)
		return err
	}
	r.st.open.Add(1)
	defer r.st.open.Add(-1)
	c.deadline(r.cfg.opTimeout)
	if err := c.write([]byte{opEcho}); err != nil {
		err = c.cause(err)
		c.close()
		r.ended("echo", err, e)
		return err
	}
	buf := make([]byte, 256<<10)
	got := make([]byte, 256<<10)
	for !r.stopping() && time.Now().Before(until) {
		n := logUniform(rng.Float64(), 1, 256<<10)
		msg := buf[:n]
		_, _ = src.Read(msg)
		c.deadline(r.cfg.opTimeout)
		// Written from a second goroutine: a 256 KiB message may not fit
		// in the socket buffers before its echo has to be read.
		werr := make(chan error, 1)
		cuts := rng.IntN(3)
		go func() { werr <- c.writeSplit(msg, cuts, rng2(n)) }()
		k, err := c.readFull(got[:n])
		if err != nil {
			c.reset() // unblocks the writer
		}
		if wErr := <-werr; err == nil && wErr != nil {
			err = wErr
		}
		r.st.sent.Add(int64(n))
		r.st.check(c.kind("echo"), got[:k], msg[:k])
		if err != nil {
			r.ended("echo", err, e)
			return err
		}
		r.st.roundTrips.Add(1)
		if r.cfg.think > 0 && !r.pause(time.Duration(rng.Int64N(2*int64(r.cfg.think)+1))) {
			break
		}
	}
	c.close()
	return nil
}

// rng2 is a cut-point picker for writeSplit that owns its state, because the
// writer goroutine must not share the worker's generator.
func rng2(seed int) func(int) int {
	g := mrand.New(mrand.NewPCG(uint64(seed), 7))
	return func(n int) int { return g.IntN(n) }
}

// bulkWorker alternates downloads and uploads of 1 KiB .. bulkMax.
func (r *soakRun) bulkWorker(id uint64, b64 bool) {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 200+id))
	for i := 0; !r.stopping(); i++ {
		n := int64(logUniform(rng.Float64(), 1<<10, int(r.cfg.bulkMax)))
		var err error
		if (i+int(id))%2 == 0 {
			err = r.bulkDown(rng.Uint64(), n, b64, r.wantWSS(rng), -1)
		} else {
			err = r.bulkUp(rng.Uint64(), n, b64, r.wantWSS(rng), rng)
		}
		if err != nil {
			r.pause(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		}
	}
}

// bulkDown has the target send n bytes of seed's stream and verifies them.
// With resetAfter >= 0 it resets the connection after that many bytes (the
// client-reset fault).
func (r *soakRun) bulkDown(seed uint64, n int64, b64, wss bool, resetAfter int64) error {
	kind := "bulk-down"
	if resetAfter >= 0 {
		kind = "client-reset"
	}
	c, e, err := r.dial(b64, wss)
	if err != nil {
		r.ended(kind+"-open", err, e)
		return err
	}
	r.st.open.Add(1)
	defer r.st.open.Add(-1)
	c.deadline(r.cfg.opTimeout)
	if err := c.write(opHeader(opDown, seed, uint64(n))); err != nil {
		err = c.cause(err)
		c.close()
		r.ended(kind, err, e)
		return err
	}
	want := stream(seed)
	got, exp := make([]byte, 64<<10), make([]byte, 64<<10)
	var read int64
	for read < n {
		if resetAfter >= 0 && read >= resetAfter {
			c.reset()
			return nil
		}
		if r.stopping() {
			c.close()
			return nil
		}
		c.deadline(r.cfg.opTimeout)
		k, err := c.read(got[:min(int64(len(got)), n-read)])
		if k > 0 {
			_, _ = want.Read(exp[:k])
			r.st.check(c.kind(kind), got[:k], exp[:k])
			read += int64(k)
		}
		if err != nil {
			c.close()
			r.ended(kind, err, e)
			return err
		}
	}
	c.close()
	r.st.bulkDone.Add(1)
	return nil
}

// bulkUp sends n bytes of seed's stream in frames of varied size; the target
// checks them and answers how many differed.
func (r *soakRun) bulkUp(seed uint64, n int64, b64, wss bool, rng *mrand.Rand) error {
	c, e, err := r.dial(b64, wss)
	if err != nil {
		r.ended("bulk-up-open", err, e)
		return err
	}
	r.st.open.Add(1)
	defer r.st.open.Add(-1)
	c.deadline(r.cfg.opTimeout)
	if err := c.write(opHeader(opUp, seed, uint64(n))); err != nil {
		err = c.cause(err)
		c.close()
		r.ended("bulk-up", err, e)
		return err
	}
	src := stream(seed)
	buf := make([]byte, 256<<10)
	for left := n; left > 0; {
		if r.stopping() {
			c.close()
			return nil
		}
		k := int64(logUniform(rng.Float64(), 1, len(buf)))
		k = min(k, left)
		_, _ = src.Read(buf[:k])
		c.deadline(r.cfg.opTimeout)
		if err := c.write(buf[:k]); err != nil {
			err = c.cause(err)
			c.close()
			r.ended("bulk-up", err, e)
			return err
		}
		left -= k
		r.st.sent.Add(k)
	}
	var ans [8]byte
	c.deadline(r.cfg.opTimeout)
	_, err = c.readFull(ans[:])
	c.close()
	if err != nil {
		r.ended("bulk-up", err, e)
		return err
	}
	// An answer above n is itself corrupt; n bytes is the most it can mean.
	bad := int64(min(binary.BigEndian.Uint64(ans[:]), uint64(n)))
	r.st.counted(c.kind("bulk-up"), n, bad, func() string {
		return fmt.Sprintf("bulk-up: the target saw %d of %d bytes differ", bad, n)
	})
	r.st.bulkDone.Add(1)
	return nil
}

// churnWorker opens, echoes one short message, and closes, again and again.
func (r *soakRun) churnWorker(id uint64) {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 300+id))
	for !r.stopping() {
		b64 := rng.Float64() < r.cfg.b64Share
		if err := r.churnOnce(rng, b64, r.wantWSS(rng)); err != nil {
			r.pause(time.Duration(50+rng.IntN(200)) * time.Millisecond)
		}
		r.pause(time.Duration(rng.IntN(20)) * time.Millisecond)
	}
}

func (r *soakRun) churnOnce(rng *mrand.Rand, b64, wss bool) error {
	c, e, err := r.dial(b64, wss)
	if err != nil {
		r.ended("churn-open", err, e)
		return err
	}
	defer c.close()
	msg := make([]byte, 1+1+rng.IntN(64))
	msg[0] = opEcho
	for i := 1; i < len(msg); i++ {
		msg[i] = byte(rng.Uint32())
	}
	c.deadline(r.cfg.opTimeout)
	if err := c.write(msg); err != nil {
		r.ended("churn", c.cause(err), e)
		return err
	}
	got := make([]byte, len(msg)-1)
	k, err := c.readFull(got)
	r.st.sent.Add(int64(len(got)))
	r.st.check(c.kind("churn"), got[:k], msg[1:1+k])
	if err != nil {
		r.ended("churn", err, e)
		return err
	}
	r.st.churned.Add(1)
	return nil
}
