package token

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lookups that arrive together are sent to Redis together: a few batcher
// goroutines each take whatever lookups are queued when they are free and
// send them as one pipeline (one write, one read, one wake-up of Redis for
// all of them). Nothing waits to fill a batch, so a lone lookup costs one
// round trip as before; under a burst of set-ups the batches grow with the
// queue, and Redis and the proxy pay per batch rather than per session.
// Each caller still waits only until its own deadline.

const (
	redisBatchers = 2   // pipelines in flight at once
	redisMaxBatch = 128 // lookups in one pipeline at most
	// redisBatchTimeout bounds one pipeline; a caller whose deadline is
	// shorter gives up on its own.
	redisBatchTimeout = 5 * time.Second
)

// redisLookup is one queued GET and where its answer goes.
type redisLookup struct {
	key    string
	result chan redisResult // buffered: the batcher never waits on a caller
}

type redisResult struct {
	value string
	err   error
}

// get queues a GET of key and waits for its value or ctx's end.
func (p *tokenRedis) get(ctx context.Context, key string) (string, error) {
	l := &redisLookup{key: key, result: make(chan redisResult, 1)}
	select {
	case p.queue <- l:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-p.closed:
		return "", redis.ErrClosed
	}
	select {
	case r := <-l.result:
		return r.value, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// runBatcher sends queued lookups as pipelines until the plugin closes.
func (p *tokenRedis) runBatcher() {
	batch := make([]*redisLookup, 0, redisMaxBatch)
	cmds := make([]*redis.StringCmd, 0, redisMaxBatch)
	for {
		select {
		case first := <-p.queue:
			batch = append(batch[:0], first)
		case <-p.closed:
			return
		}
	more:
		for len(batch) < redisMaxBatch {
			select {
			case l := <-p.queue:
				batch = append(batch, l)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), redisBatchTimeout)
		cmds = cmds[:0]
		if len(batch) == 1 {
			cmds = append(cmds, p.client.Get(ctx, batch[0].key))
		} else {
			pipe := p.client.Pipeline()
			for _, l := range batch {
				cmds = append(cmds, pipe.Get(ctx, l.key))
			}
			_, _ = pipe.Exec(ctx) // each command carries its own error
		}
		cancel()
		for i, l := range batch {
			value, err := cmds[i].Result()
			l.result <- redisResult{value, err}
		}
		clear(batch)
	}
}
