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
# test/novnc_test.go: noVNC (Debian's, and npm's latest) through websockify to
# TigerVNC's Xvnc, with xsetroot and xterm drawing on its screen.
[ -x /usr/bin/Xvnc ] || need_apt+=(tigervnc-standalone-server)
[ -f /usr/share/novnc/vnc_lite.html ] || need_apt+=(novnc)
[ -x /usr/bin/xsetroot ] || need_apt+=(x11-xserver-utils)
[ -x /usr/bin/xterm ] || need_apt+=(xterm)
[ -f /usr/share/fonts/X11/misc/6x13-ISO8859-1.pcf.gz ] || need_apt+=(xfonts-base) # xterm's font "fixed" in Xvnc
# test/tokens_test.go: TokenRedis against a real Redis the tests start.
[ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
# test/logging_test.go: --syslog to a real rsyslogd (UDP and a unix socket).
[ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)
# test/wrap_test.go: socat as the wrapped program, and a C compiler for
# rebind.so (make builds it; websockify builds it on demand too).
[ -x /usr/bin/socat ] || need_apt+=(socat)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
# test/service_test.go: systemd's own socket activation tool.
[ -x /usr/bin/systemd-socket-activate ] || need_apt+=(systemd)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# test/realaddr_test.go: haproxy in front, sending PROXY headers and X-Forwarded-For.
[ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
# test/install_test.go: the installed man page read by man, the completions
# run by bash (and bash-completion's loader) and zsh, and the systemd units
# run by systemd booted in namespaces (unshare, nsenter).
[ -x /usr/bin/man ] || need_apt+=(man-db)
[ -x /usr/bin/groff ] || need_apt+=(groff-base)
[ -x /usr/bin/zsh ] || need_apt+=(zsh)
[ -f /usr/share/bash-completion/bash_completion ] || need_apt+=(bash-completion)
[ -x /usr/bin/unshare ] && [ -x /usr/bin/nsenter ] || need_apt+=(util-linux)
[ -x /lib/systemd/systemd ] || need_apt+=(systemd)
getent group ssl-cert >/dev/null || need_apt+=(ssl-cert) # the group of /etc/ssl/private's keys

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
# test/novnc_test.go: the latest @novnc/novnc from npm, into the gitignored
# .cache/npm of the checkout (npm install there updates it to the latest).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
npm install --prefix "$root/.cache/npm" --no-audit --no-fund --loglevel=error @novnc/novnc@latest
