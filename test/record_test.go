package test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// --record: every upgraded session is written to FILE.N in the format of
// noVNC's playback page; node loads each file, and its chunks, directions
// and order must be exactly what went over the wire.

// recordedChunk is one element of VNC_frame_data as node decodes it.
type recordedChunk struct {
	Dir  string `json:"dir"` // "{" to the client, "}" from it
	MS   int64  `json:"ms"`
	Data string `json:"data"` // base64
}

// loadRecording evaluates a recording with node, as the playback page
// does, and returns its chunks; the last element must be 'EOF'.
func loadRecording(t *testing.T, path string) []recordedChunk {
	t.Helper()
	script := `
const fs = require('fs');
const src = fs.readFileSync(process.argv[1], 'latin1');
const frames = new Function(src + '; return VNC_frame_data;')();
if (frames[frames.length - 1] !== 'EOF') throw new Error('no EOF at the end');
const out = [];
for (const f of frames.slice(0, -1)) {
	const dir = f[0];
	const end = f.indexOf(dir, 1);
	if ((dir !== '{' && dir !== '}') || end < 0) throw new Error('bad frame ' + f.slice(0, 20));
	out.push({dir: dir, ms: Number(f.slice(1, end)), data: Buffer.from(f.slice(end + 1), 'latin1').toString('base64')});
}
process.stdout.write(JSON.stringify(out));
`
	out, err := exec.Command("node", "-e", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("node could not load %s: %v\n%s", path, err, truncate(string(out), 2000))
	}
	var chunks []recordedChunk
	if err := json.Unmarshal(out, &chunks); err != nil {
		t.Fatalf("node's output: %v", err)
	}
	return chunks
}

// joined concatenates the chunks of one direction and checks that their
// times never go back.
func joined(t *testing.T, chunks []recordedChunk, dir string) []byte {
	t.Helper()
	var b []byte
	last := int64(0)
	for _, c := range chunks {
		if c.MS < last {
			t.Errorf("time goes back: %d after %d", c.MS, last)
		}
		last = c.MS
		if c.Dir != dir {
			continue
		}
		d, err := base64.StdEncoding.DecodeString(c.Data)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, d...)
	}
	return b
}

// waitRecordings waits until the directory holds n finished recordings.
func waitRecordings(t *testing.T, base string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, _ := filepath.Glob(base + ".*")
		done := 0
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && bytes.HasSuffix(b, []byte("'EOF'];\n")) {
				done++
			}
		}
		if done >= n || time.Now().After(deadline) {
			if done < n {
				t.Fatalf("%d finished recordings after 10s, want %d: %v", done, n, files)
			}
			return files
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRecord(t *testing.T) {
	pk := newPKI(t)
	for _, tc := range []struct {
		name  string
		args  []string
		tls   *tls.Config
		token bool // the target comes from a TokenFile
	}{
		{"ws", nil, nil, false},
		{"wss", []string{"--cert", pk.bundleFile}, pk.clientTLS(nil), false},
		{"workers", []string{"--workers", "2"}, nil, false},
		{"token", nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "session")
			rng := rand.New(rand.NewSource(1))
			// The target greets with every byte value, then echoes.
			greeting := make([]byte, 512)
			for i := range greeting {
				greeting[i] = byte(i)
			}
			tg := startTarget(t, "tcp", "127.0.0.1:0", func(c *tconn) {
				if _, err := c.Write(greeting); err != nil {
					return
				}
				_, _ = io.Copy(c, c)
			})
			args := append([]string{"--record", base}, tc.args...)
			path := "/"
			if tc.token {
				tokens := filepath.Join(t.TempDir(), "tokens")
				writeFile(t, tokens, "rec: "+tg.addr+"\n")
				args = append(args, "--token-plugin", "TokenFile", "--token-source", tokens)
				path = "/?token=rec"
			} else {
				args = append(args, tg.addr)
			}
			p := launchProxy(t, proxyConfig{Args: args})
			if !waitLog(p, "Recording to '"+base+".*'", 2*time.Second) {
				t.Errorf("banner does not say where it records")
			}
			// Enough that both workers take some: with one numbering for
			// both, two sessions would write one file and a recording would
			// be missing.
			const sessions = 8
			sent := make([][]byte, sessions)
			for i := range sessions {
				r, err := upgradeTo(p, tc.tls, path)
				if err != nil || r.status != 101 {
					t.Fatalf("upgrade: %v %d", err, r.status)
				}
				if got, err := r.c.readN(len(greeting)); err != nil || !bytes.Equal(got, greeting) {
					t.Fatalf("greeting: %v", err)
				}
				for k := 0; k < 20; k++ {
					chunk := make([]byte, 1+rng.Intn(3000))
					rng.Read(chunk)
					chunk = append(chunk, "'\\\n\r\t\x00\x7f\xff"...)
					mustEcho(t, r.c, chunk)
					sent[i] = append(sent[i], chunk...)
				}
				r.c.conn.Close()
			}
			files := waitRecordings(t, base, sessions)
			if len(files) != sessions {
				t.Errorf("%d recordings for %d sessions: %v", len(files), sessions, files)
			}
			if !waitLog(p, "opening record file: "+base+".", 2*time.Second) {
				t.Errorf("no 'opening record file' line")
			}
			// Match recordings to sessions by what the client sent.
			matched := 0
			for _, f := range files {
				chunks := loadRecording(t, f)
				from := joined(t, chunks, "}")
				to := joined(t, chunks, "{")
				for i := range sent {
					if bytes.Equal(from, sent[i]) {
						matched++
						if want := append(append([]byte{}, greeting...), sent[i]...); !bytes.Equal(to, want) {
							t.Errorf("%s: %d bytes to the client recorded, want %d (greeting then echo)", f, len(to), len(want))
						}
					}
				}
			}
			if matched != sessions {
				t.Errorf("%d of %d sessions recorded exactly as sent", matched, sessions)
			}
		})
	}
}
