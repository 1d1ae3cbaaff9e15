package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"
)

// The slow mode is a slow consumer: the target sends as fast as the proxy
// takes bytes, the client reads at a fixed rate. A proxy with backpressure
// holds a bounded buffer; one without buffers everything, and its memory
// shows it. The throughput mode reads at full speed, so it cannot show this.

type slowResult struct {
	Mode                  string  `json:"mode"`
	Label                 string  `json:"label"`
	Proxy                 string  `json:"proxy"`
	Commit                string  `json:"commit,omitempty"`
	Machine               string  `json:"machine,omitempty"`
	Time                  string  `json:"time"`
	Bytes                 int64   `json:"bytes"`
	RateBps               int64   `json:"rate_bps"`
	Seconds               float64 `json:"seconds"`
	BytesVerified         int64   `json:"bytes_verified"`
	CorruptedBytes        int64   `json:"corrupted_bytes"`
	ProxyRSSBefore        int64   `json:"proxy_rss_before"`
	ProxyRSSPeak          int64   `json:"proxy_rss_peak"`
	ProxyPrivateDirtyPeak int64   `json:"proxy_private_dirty_peak"`
	Error                 string  `json:"error,omitempty"`
}

func (r *slowResult) summary() string {
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	s := fmt.Sprintf("slow consumer through %s: %d bytes at %d B/s in %.1f s; verified %d, corrupted %d; proxy RSS %.1f MiB before, peak %.1f MiB (private dirty peak %.1f MiB)",
		r.Label, r.Bytes, r.RateBps, r.Seconds, r.BytesVerified, r.CorruptedBytes,
		mib(r.ProxyRSSBefore), mib(r.ProxyRSSPeak), mib(r.ProxyPrivateDirtyPeak))
	if r.Error != "" {
		s += "\nerror: " + r.Error
	}
	return s
}

func slowMain(args []string) error {
	c := &soakConfig{}
	fs := flag.NewFlagSet("slow", flag.ContinueOnError)
	soakFlags(fs, c)
	nbytes := fs.Int64("bytes", 256<<20, "bytes the target sends")
	rate := fs.Int64("rate", 4<<20, "bytes per second the client reads")
	sample := fs.Duration("sample", 200*time.Millisecond, "interval of the proxy memory samples")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := c.check(); err != nil {
		return err
	}
	if *nbytes < 1 || *rate < 1 {
		return errors.New("-bytes and -rate must be positive")
	}
	armWatchdog(time.Duration(*nbytes / *rate)*time.Second*2+c.opTimeout+time.Minute, nil)
	res, err := runSlow(c, *nbytes, *rate, *sample)
	runCleanups()
	if res != nil {
		printOutcome(c.jsonOut, res.summary(), res)
		if err == nil && res.Error != "" {
			os.Exit(1)
		}
	}
	return err
}

func runSlow(c *soakConfig, n, rate int64, sample time.Duration) (*slowResult, error) {
	env, desc, err := startSoakEnv(c.proxyURL, c.proxyCmd, c.target, c.proxyLog, c.label, c.proxyPID, c.opTimeout)
	if err != nil {
		return nil, err
	}
	res := &slowResult{Mode: "slow", Label: c.label, Proxy: desc, Commit: c.commit, Machine: machineLine(), Time: time.Now().UTC().Format(time.RFC3339), Bytes: n, RateBps: rate}
	if env.pid != 0 {
		res.ProxyRSSBefore = treeMemory(env.pid).RSS
	}
	mem := startMemPeak(env.pid, sample)
	err = slowTransfer(env, c.opTimeout, n, rate, res)
	res.ProxyRSSPeak, res.ProxyPrivateDirtyPeak = mem.stop()
	if err == nil && res.CorruptedBytes > 0 {
		err = fmt.Errorf("%d corrupted bytes", res.CorruptedBytes)
	}
	if err == nil && env.proxy != nil {
		err = env.proxy.alive()
	}
	if err != nil {
		res.Error = err.Error()
	}
	return res, nil
}

// slowTransfer reads n bytes of a download at rate bytes/s, in chunks of a
// tenth of a second's worth, verifying each.
func slowTransfer(env *soakEnv, opTimeout time.Duration, n, rate int64, res *slowResult) error {
	c, err := dialSoak(background, env.client, false)
	if err != nil {
		return err
	}
	defer c.close()
	seed := uint64(time.Now().UnixNano())
	c.deadline(opTimeout)
	if err := c.write(opHeader(opDown, seed, uint64(n))); err != nil {
		return err
	}
	want := stream(seed)
	chunk := max(1, min(rate/10, 1<<20))
	got, exp := make([]byte, chunk), make([]byte, chunk)
	start := time.Now()
	var read int64
	for read < n {
		c.deadline(opTimeout)
		k, err := c.read(got[:min(chunk, n-read)])
		if k > 0 {
			_, _ = want.Read(exp[:k])
			res.CorruptedBytes += diffCount(got[:k], exp[:k])
			res.BytesVerified += int64(k)
			read += int64(k)
		}
		if err != nil {
			res.Seconds = time.Since(start).Seconds()
			return fmt.Errorf("after %d bytes: %w", read, err)
		}
		// Hold the pace: sleep until the bytes read so far are due.
		time.Sleep(time.Until(start.Add(time.Duration(float64(read) / float64(rate) * float64(time.Second)))))
	}
	res.Seconds = time.Since(start).Seconds()
	return nil
}
