# websockify in Go. `make` builds bin/websockify; see README.md.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build rebind demo test unit race check fuzz bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/websockify ./cmd/websockify
	$(GO) build -trimpath -o bin/websockify-demo ./cmd/websockify-demo
	$(MAKE) rebind

# rebind.so beside bin/websockify, for wrapping a program (`websockify PORT
# -- PROGRAM`); without it websockify builds one on demand with cc.
rebind:
	mkdir -p bin
	$(CC) -shared -fPIC -O2 -o bin/rebind.so wrap/rebind/rebind.c -ldl

# The README's run command: websockify on 127.0.0.1:6080 in front of an
# embedded echo target.
demo: build
	bin/websockify-demo

# The README's test command (and CI's): installs what is missing, then runs
# every test, fuzz seed corpora included.
test:
	bash scripts/install-test-deps.sh
	$(MAKE) build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# Quick checks for everyday work, with no root and nothing installed: vet
# and the unit tests of the packages that need no outside program (the
# integration suite in test/ and loadtest's runs against the peers need
# `make test`).
UNIT_PKGS = ./codec/... ./metrics/... ./sniff/... ./eventloop/... ./webserver/... ./workers/... ./cmd/... ./auth/... ./record/... ./logsink/... ./service/...
unit:
	$(GO) vet ./...
	$(GO) test -count=1 $(UNIT_PKGS)

# The integration tests against a race-detector build of the binary; a race
# stops the proxy at once, which fails the test that caused it.
race:
	WEBSOCKIFY_TEST_RACE=1 GORACE=halt_on_error=1 $(GO) test -count=1 -timeout 20m ./test/

# Static checks beyond vet.
check:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

FUZZTIME ?= 60s
fuzz:
	$(GO) test ./codec -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME)
	$(GO) test ./codec -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./codec -run '^$$' -fuzz '^FuzzDecoderAgainstGobwas$$' -fuzztime $(FUZZTIME)
	$(GO) test ./codec -run '^$$' -fuzz '^FuzzBase64AgainstStdlib$$' -fuzztime $(FUZZTIME)
	$(GO) test ./codec -run '^$$' -fuzz '^FuzzEncoder$$' -fuzztime $(FUZZTIME)
	$(GO) test ./codec -run '^$$' -fuzz '^FuzzCloseFrame$$' -fuzztime $(FUZZTIME)
	$(GO) test ./codec -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME)
	$(GO) test ./token -run '^$$' -fuzz '^FuzzParsers$$' -fuzztime $(FUZZTIME)

bench: build
	bash bench/run.sh

clean:
	rm -rf bin
