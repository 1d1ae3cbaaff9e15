#!/usr/bin/env bash
# Installs what the tests need and the machine lacks. Safe to run again.
set -euo pipefail

need_apt=()
command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || need_apt+=(golang-go)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v bash >/dev/null 2>&1 || need_apt+=(bash)
[ -x /usr/bin/websockify ] || need_apt+=(websockify) # the Python original, which loadtest's tests drive too
[ -x /usr/bin/chromium ] || need_apt+=(chromium)   # test/browser_test.go runs web/websock.js in it
# test/telnet_test.go: web/wstelnet.html logs in to a real telnetd as this user.
[ -x /usr/sbin/telnetd ] || need_apt+=(inetutils-telnetd)

if [ ${#need_apt[@]} -gt 0 ]; then
	echo "installing: ${need_apt[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need_apt[@]}"
fi
# test/telnet_test.go logs in with this account. Its password is made up on
# each machine and kept where only root can read it, so no machine that ran
# the tests has an account with a password anyone could know.
pwfile=/var/lib/websockify-tests/wstelnet.password
if ! id wstelnet >/dev/null 2>&1; then
	useradd --create-home --shell /bin/sh wstelnet
fi
if [ ! -s "$pwfile" ]; then
	install -d -m 700 "$(dirname "$pwfile")"
	(umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$pwfile")
	echo "wstelnet:$(cat "$pwfile")" | chpasswd
fi
# go.mod names the Go version; an older go fetches it from the module proxy.
export GOTOOLCHAIN=auto
go mod download
