package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

const (
	// redisConns bounds the Redis pool; Sockets reports it.
	redisConns        = 8
	redisDialTimeout  = 5 * time.Second
	redisReadTimeout  = 3 * time.Second
	redisWriteTimeout = 3 * time.Second
)

// redisSource is a parsed TokenRedis source:
// host[:port[:db[:password[:namespace]]]].
type redisSource struct {
	host      string
	port      int
	db        int
	password  string
	namespace string // without the ":" that joins it to the token
}

// parseRedisSource reads the source as Python does: fields split at colons
// (a field may be double-quoted to hold colons); empty fields take the
// defaults 6379, db 0, no password, no namespace.
func parseRedisSource(src string) (redisSource, error) {
	fields := parseSourceArgs(src)
	bad := func(why string) (redisSource, error) {
		return redisSource{}, fmt.Errorf("TokenRedis: the source %q is not in the form <host>[:<port>[:<db>[:<password>[:<namespace>]]]]: %s", src, why)
	}
	if len(fields) > 5 {
		return bad("more than 5 fields")
	}
	fields = append(fields, make([]string, 5-len(fields))...)
	s := redisSource{host: fields[0], port: 6379, password: fields[3], namespace: fields[4]}
	if s.host == "" {
		return bad("no host")
	}
	if fields[1] != "" {
		port, err := strconv.Atoi(fields[1])
		if err != nil || port < 1 || port > 65535 {
			return bad("port " + strconv.Quote(fields[1]) + " is not a number in 1..65535")
		}
		s.port = port
	}
	if fields[2] != "" {
		db, err := strconv.Atoi(fields[2])
		if err != nil || db < 0 {
			return bad("db " + strconv.Quote(fields[2]) + " is not a number")
		}
		s.db = db
	}
	return s, nil
}

func (s redisSource) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// key is the Redis key that holds token's target.
func (s redisSource) key(token string) string {
	if s.namespace == "" {
		return token
	}
	return s.namespace + ":" + token
}

// tokenRedis is TokenRedis: the target is the value of the token's key,
// "host:port" or {"host": "host:port"}.
type tokenRedis struct {
	source  redisSource
	backend string // "redis host:port", naming it in errors
	client  *redis.Client
	queue   chan *redisLookup // lookups for the batchers (redisbatch.go)
	closed  chan struct{}     // closed by Close: the batchers end
	once    sync.Once
	log     func(string)
}

func newTokenRedis(src string, log func(string)) (Plugin, error) {
	source, err := parseRedisSource(src)
	if err != nil {
		return nil, err
	}
	client := redis.NewClient(&redis.Options{
		Addr:           source.addr(),
		Password:       source.password,
		DB:             source.db,
		Protocol:       2, // plain GETs need nothing newer; works with old servers
		PoolSize:       redisConns,
		MaxActiveConns: redisConns,
		// Pipelines (redisbatch.go) take their connections from a pool of
		// their own: one per batcher, with buffers sized for small GETs.
		PipelinePoolSize:        redisBatchers,
		PipelineReadBufferSize:  16 << 10,
		PipelineWriteBufferSize: 16 << 10,
		DialTimeout:             redisDialTimeout,
		ReadTimeout:             redisReadTimeout,
		WriteTimeout:            redisWriteTimeout,
		// Lookups carry the session's deadline; let it cut a slow call short.
		ContextTimeoutEnabled: true,
		// No retries: a failed GET is reported at once as a BackendError, within the deadline.
		MaxRetries:               -1,
		DialerRetries:            1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	redisLog.Store(&log)
	redisLoggerOnce.Do(func() { redis.SetLogger(redisLogger{}) })
	p := &tokenRedis{source: source, backend: "redis " + source.addr(), client: client, log: log,
		queue: make(chan *redisLookup, 4*redisMaxBatch), closed: make(chan struct{})}
	for range redisBatchers {
		go p.runBatcher()
	}
	return p, nil
}

// go-redis logs through one process-wide logger; it is pointed at the log
// of the latest TokenRedis (the proxy has one) instead of stderr.
var (
	redisLog        atomic.Pointer[func(string)]
	redisLoggerOnce sync.Once
)

type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	if log := redisLog.Load(); log != nil {
		msg := strings.Join(strings.Fields(fmt.Sprintf(format, v...)), " ")
		(*log)("TokenRedis: " + msg)
	}
}

func (p *tokenRedis) Name() string { return "TokenRedis" }
func (p *tokenRedis) Sockets() int { return redisConns + redisBatchers }
func (p *tokenRedis) Close() error {
	var err error
	p.once.Do(func() {
		close(p.closed)
		err = p.client.Close()
	})
	return err
}

func (p *tokenRedis) Lookup(ctx context.Context, token string) (Target, error) {
	value, err := p.get(ctx, p.source.key(token))
	if errors.Is(err, redis.Nil) {
		return Target{}, ErrNotFound
	}
	if err != nil {
		return Target{}, &BackendError{Backend: p.backend, Err: err}
	}
	target, err := parseRedisValue(value)
	if err != nil {
		p.log(fmt.Sprintf("TokenRedis: the value of key %q: %v", p.source.key(token), err))
		return Target{}, ErrNotFound
	}
	return target, nil
}

// parseRedisValue reads "host:port" or {"host": "host:port"}.
func parseRedisValue(value string) (Target, error) {
	value = strings.TrimSpace(value)
	if !strings.HasPrefix(value, "{") {
		return ParseTarget(value)
	}
	var object struct {
		Host *string `json:"host"`
	}
	if err := json.Unmarshal([]byte(value), &object); err != nil {
		return Target{}, fmt.Errorf("not JSON: %w", err)
	}
	if object.Host == nil {
		return Target{}, errors.New(`no "host" key in the JSON`)
	}
	return ParseTarget(strings.TrimSpace(*object.Host))
}
