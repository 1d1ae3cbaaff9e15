#!/usr/bin/env bash
# bench/strace-throughput.sh DIR: the system calls of bin/websockify moving
# one connection's bytes (DIR: down or up), for the strace figures in
# BENCHMARKS.md ("What limits ours").
#
# Two runs of `bin/loadtest throughput` with the proxy under strace: one
# tracing the data path's calls with timestamps and durations (-ttt -T),
# one counting every call (-c). Writes bench/results/strace-throughput-DIR.txt:
# the commands, loadtest's summary of both runs, the calls per MiB moved and
# the sizes the reads and writes returned (from the full trace), the strace
# -c table, and an excerpt of the trace from the middle of the transfer.
# strace slows the proxy down several times: the MB/s of these runs are not
# throughput figures. Environment: BYTES (default 268435456).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

dir=${1:-}
case $dir in
down | up) ;;
*)
	echo "usage: bench/strace-throughput.sh down|up" >&2
	exit 2
	;;
esac
bytes=${BYTES:-268435456}
out=bench/results/strace-throughput-$dir.txt
calls=read,write,writev,readv,recvfrom,sendto,recvmsg,sendmsg,epoll_pwait,epoll_wait

tmp=$(mktemp -d /tmp/strace-throughput.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

go build -o bin/loadtest ./loadtest || exit 1
go build -o bin/websockify ./cmd/websockify || exit 1
# shellcheck source=bench/build-name.sh
. bench/build-name.sh
commit=$(build_name)

trace_cmd="strace -f -ttt -T -e trace=$calls -o $tmp/trace bin/websockify {listen} {target}"
count_cmd="strace -c -f -o $tmp/counts bin/websockify {listen} {target}"
lt=(bin/loadtest throughput -dir "$dir" -bytes "$bytes" -repeat 1 -commit "$commit")

timeout --kill-after=10 600 "${lt[@]}" -proxy-cmd "$trace_cmd" -label strace-trace >"$tmp/trace.summary" 2>&1 ||
	echo "loadtest (trace) exited with status $?" >>"$tmp/trace.summary"
timeout --kill-after=10 600 "${lt[@]}" -proxy-cmd "$count_cmd" -label strace-count >"$tmp/count.summary" 2>&1 ||
	echo "loadtest (count) exited with status $?" >>"$tmp/count.summary"

{
	echo "# bin/websockify at commit $commit, one connection $dir, $bytes bytes ($((bytes >> 20)) MiB), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, Linux $(uname -r), $(strace -V | head -1)"
	echo "# trace: ${lt[*]} -proxy-cmd '$trace_cmd'"
	echo "# count: ${lt[*]} -proxy-cmd '$count_cmd'"
	echo "# strace slows the proxy several times over: the MB/s below are not throughput figures"
	sed 's/^/# /' "$tmp/trace.summary" "$tmp/count.summary"
	echo
	echo "## From the trace: completed calls by descriptor, per MiB moved, and what they returned"
	echo "## (epoll_pwait and epoll_wait also by their timeout argument: 0 returns at once, -1 blocks until an event)"
	# Lines: PID SECONDS CALL(FD, ...) = RET <SECONDS IN THE CALL>. A call
	# cut by a thread switch shows as "CALL(FD, <unfinished ...>" and later
	# "<... CALL resumed>... = RET": it is counted once, at the resumed half,
	# with the descriptor its first half named.
	awk -v mib=$((bytes >> 20)) '
	{
		pid = $1
		if ($3 == "<...") {
			call = $4; sub(/resumed>.*/, "", call); fd = pend[pid]
		} else {
			call = $3; sub(/\(.*/, "", call)
			fd = $3; sub(/^[^(]*\(/, "", fd); sub(/[,)].*/, "", fd)
			if ($0 ~ /<unfinished \.\.\.>/) { pend[pid] = fd; next }
		}
		if (!match($0, /= -?[0-9]+/)) next
		ret = substr($0, RSTART + 2, RLENGTH - 2) + 0
		key = call " fd " fd
		if (call ~ /^epoll_p?wait$/ && match($0, /, [0-9]+, -?[0-9]+, NULL/)) {
			t = substr($0, RSTART, RLENGTH); sub(/, NULL/, "", t); sub(/.*, /, "", t)
			key = key " timeout " t
		}
		n[key]++
		if (ret > 0) { sum[key] += ret; size[call " fd " fd " returned " ret]++ }
		if (ret <= 0) zero[key]++
		if (match($0, /<[0-9.]+>$/)) secs[key] += substr($0, RSTART + 1, RLENGTH - 2)
	}
	END {
		for (k in n) printf "%7d calls %7.2f per MiB  %-34s %11d bytes or events returned, %4d returned 0 or an error, %.3f s inside\n", n[k], n[k] / mib, k, sum[k], zero[k], secs[k] | "sort -k1,1nr"
		close("sort -k1,1nr")
		print ""
		print "## The results returned most often (call, descriptor, bytes or events: times)"
		for (k in size) print k ": " size[k] | "sort -t: -k2,2nr | head -12"
	}' "$tmp/trace"
	echo
	echo "## strace -c -f (every system call of the proxy, the count run)"
	cat "$tmp/counts"
	echo
	echo "## Excerpt: 60 consecutive lines from the middle of the trace (PID, time, call, result, <seconds in the call>)"
	total=$(wc -l <"$tmp/trace")
	sed -n "$((total / 2)),$((total / 2 + 59))p" "$tmp/trace"
} >"$out"
cat "$out"
