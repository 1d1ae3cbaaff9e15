# websockify in Go. `make` builds bin/websockify; see README.md.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: all build rebind docs demo test unit race check fuzz bench clean install uninstall

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/websockify ./cmd/websockify
	$(GO) build -trimpath -o bin/websockify-demo ./cmd/websockify-demo
	$(MAKE) rebind
	$(MAKE) docs

# rebind.so beside bin/websockify, for wrapping a program (`websockify PORT
# -- PROGRAM`); without it websockify builds one on demand with cc.
rebind:
	mkdir -p bin
	$(CC) -shared -fPIC -O2 -o bin/rebind.so wrap/rebind/rebind.c -ldl

# The man page and the shell completions, generated from the flag
# definitions by the binary just built (hidden flags), so they cannot drift
# from it.
docs:
	bin/websockify --print-man-page >bin/websockify.1
	bin/websockify --print-completion bash >bin/websockify.bash
	bin/websockify --print-completion zsh >bin/_websockify

# `make install PREFIX=/usr DESTDIR=/tmp/pkg`. rebind.so goes to
# PREFIX/lib/websockify, where websockify looks for it relative to its own
# directory (../lib/websockify), so the tree may be moved as a whole. The
# systemd units go where systemd looks for them (/usr/local/lib/systemd/system
# is searched too) with their ExecStart= pointed at PREFIX/bin; they are not
# enabled (see README "Running as a service").
PREFIX         ?= /usr/local
DESTDIR        ?=
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL        ?= install
WEB_FILES      := $(wildcard web/*.js web/*.html)
WEB_TEST_FILES := $(wildcard web/tests/*.html)
UNITS          := contrib/systemd/websockify@.service contrib/systemd/websockify@.socket

install: build
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/websockify \
		$(DESTDIR)$(PREFIX)/share/websockify/www/tests $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(SYSTEMDUNITDIR)
	$(INSTALL) -m 755 bin/websockify $(DESTDIR)$(PREFIX)/bin/websockify
	$(INSTALL) -m 644 bin/rebind.so $(DESTDIR)$(PREFIX)/lib/websockify/rebind.so
	$(INSTALL) -m 644 $(WEB_FILES) $(DESTDIR)$(PREFIX)/share/websockify/www/
	$(INSTALL) -m 644 $(WEB_TEST_FILES) $(DESTDIR)$(PREFIX)/share/websockify/www/tests/
	$(INSTALL) -m 644 bin/websockify.1 $(DESTDIR)$(PREFIX)/share/man/man1/websockify.1
	$(INSTALL) -m 644 bin/websockify.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/websockify
	$(INSTALL) -m 644 bin/_websockify $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_websockify
	for unit in $(UNITS); do \
		sed 's|/usr/local/|$(PREFIX)/|g' $$unit >bin/$${unit##*/} && \
		$(INSTALL) -m 644 bin/$${unit##*/} $(DESTDIR)$(SYSTEMDUNITDIR)/ || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/websockify $(DESTDIR)$(PREFIX)/share/man/man1/websockify.1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/websockify \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions/_websockify \
		$(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(notdir $(UNITS)))
	rm -rf $(DESTDIR)$(PREFIX)/lib/websockify $(DESTDIR)$(PREFIX)/share/websockify

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
UNIT_PKGS = ./codec/... ./limits/... ./metrics/... ./sniff/... ./eventloop/... ./webserver/... ./workers/... ./cmd/... ./auth/... ./record/... ./logsink/... ./service/... ./wsclient/...
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
	$(GO) test ./sniff -run '^$$' -fuzz '^FuzzProxyHeader$$' -fuzztime $(FUZZTIME)

bench: build
	bash bench/run.sh

clean:
	rm -rf bin
