#!/usr/bin/env bash
# bench/wss-vs-previous.sh: the "wss sessions" table of BENCHMARKS.md, this
# build beside the build before the session engine (commit 675dec4, whose
# wss sessions ran on two goroutines each), measured side by side.
#
# Builds bin/websockify and bin/loadtest from this tree and the old
# websockify from a temporary worktree of 675dec4 (removed afterwards), makes
# a fresh self-signed ECDSA P-256 certificate, then runs ROUNDS rounds; in
# each, every measurement runs on both builds back to back, the order turning
# each round (old, new; then new, old; ...), so drifts in the machine's load
# fall on both alike:
#   throughput down and up, one connection, 512 MiB, over ws and over wss
#   hold 2000 idle sessions, over ws and over wss (proxy memory per session)
# Every run's JSON goes to bench/results/side-by-side/wss-vs-675dec4.jsonl
# (out of the way of make bench's report, which reads bench/results/*.jsonl);
# the commands,
# a line per run and the medians [min–max] to wss-vs-675dec4.txt.
#
# Environment: ROUNDS (default 5), REPEAT (throughput runs per measurement
# and round, default 3; their median is the round's figure), BYTES (default
# 536870912), CONNS (default 2000), OLD (default 675dec4).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

rounds=${ROUNDS:-5} repeat=${REPEAT:-3} bytes=${BYTES:-536870912} conns=${CONNS:-2000} old=${OLD:-675dec4}
results=bench/results/side-by-side
txt=$results/wss-vs-$old.txt jsonl=$results/wss-vs-$old.jsonl
mkdir -p "$results"

tmp=$(mktemp -d /tmp/wss-vs-previous.XXXXXX) || exit 1
worktree=$tmp/tree
cleanup() {
	[[ -d $worktree ]] && git worktree remove --force "$worktree"
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o bin/loadtest ./loadtest || exit 1
go build -o bin/websockify ./cmd/websockify || exit 1
# shellcheck source=bench/build-name.sh
. bench/build-name.sh
new_commit=$(build_name)
old_commit=$(git rev-parse --short "$old") || exit 1
git worktree add --detach "$worktree" "$old" >/dev/null || exit 1
old_bin=$tmp/websockify-$old_commit
(cd "$worktree" && go build -o "$old_bin" ./cmd/websockify) || exit 1
git worktree remove --force "$worktree"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null || exit 1
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/self.pem"

# bin_of BUILD, commit_of BUILD
bin_of() { if [[ $1 == old ]]; then echo "$old_bin"; else echo bin/websockify; fi; }
commit_of() { if [[ $1 == old ]]; then echo "$old_commit"; else echo "$new_commit"; fi; }

: >"$jsonl"
rows=$tmp/rows # round build transport measurement value
{
	echo "# wss and ws, the build before the session engine ($old_commit, old) beside this build ($new_commit, new)"
	echo "# $(date -u +%Y-%m-%dT%H:%MZ); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, Linux $(uname -r), $(go version | cut -d' ' -f3)"
	echo "# the machine is shared with other work: compare the builds within a round (the ratios), not with other days' MB/s"
	echo "# $rounds rounds, each measurement on both builds back to back, the order turning each round;"
	echo "# certificate: openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost, cert and key in one PEM"
	echo "# commands (PROXY: $old_bin or bin/websockify; wss adds --cert PEM to the proxy and -tls to loadtest):"
	echo "#   bin/loadtest throughput -proxy-cmd 'PROXY {listen} {target}' -dir down|up -bytes $bytes -repeat $repeat -json -commit C -round R"
	echo "#   bin/loadtest hold -proxy-cmd 'PROXY {listen} {target}' -conns $conns -ramp-timeout 120s -json -commit C -round R"
	echo "# every run: round, build, then loadtest's own summary line"
} >"$txt"

# run ROUND BUILD TRANSPORT MODE ARGS...: one loadtest run; its JSON to the
# .jsonl, its summary line to the .txt, its figure to the rows.
run() {
	local round=$1 build=$2 transport=$3 mode=$4
	shift 4
	local proxy label=$build-$transport tls=()
	proxy="$(bin_of "$build")"
	if [[ $transport == wss ]]; then
		proxy+=" --cert $tmp/self.pem"
		tls=(-tls)
	fi
	local out=$tmp/run.json err=$tmp/run.err attempt
	# A hold refused by its pre-flight check (the machine's socket memory
	# taken by other work at that moment) is tried again, twice at most.
	for attempt in 1 2 3; do
		timeout --kill-after=10 600 bin/loadtest "$mode" -proxy-cmd "$proxy {listen} {target}" "${tls[@]}" \
			-label "$label" -commit "$(commit_of "$build")" -round "$round" -json "$@" >"$out" 2>"$err" && break
		echo "# round $round $label $mode $*: loadtest exited with status $? (attempt $attempt)" >>"$txt"
		grep -q "the machine's limits cannot take" "$err" || break
		sed "s/^/# $round $build /" "$err" | grep FAILED >>"$txt"
		sleep 10
	done
	cat "$out" >>"$jsonl"
	echo >>"$jsonl"
	grep -v '^hold: \(pre-flight\|the proxy\)' "$err" | sed "s/^/$round $build /" >>"$txt"
	local what value
	case $mode in
	throughput)
		what="throughput-$2"
		value=$(jq -r '.mbps.median // empty' "$out")
		;;
	hold)
		# proxy memory per session both ways loadtest gives it: the slope
		# of the memory curve (what the report takes) and the difference of
		# the readings before and after over the sessions
		what=hold-$conns-slope
		value=$(jq -r '.mem_fit.bytes_per_session // empty' "$out")
		[[ -n $value ]] && echo "$round $build $transport $what $value" >>"$rows"
		what=hold-$conns-two-readings
		value=$(jq -r '.per_session.private_dirty // empty' "$out")
		;;
	esac
	[[ -n $value ]] && echo "$round $build $transport $what $value" >>"$rows"
}

for ((round = 1; round <= rounds; round++)); do
	order="old new"
	((round % 2 == 0)) && order="new old"
	for transport in ws wss; do
		for dir in down up; do
			for build in $order; do
				echo "round $round: $build $transport throughput $dir" >&2
				run "$round" "$build" "$transport" throughput -dir "$dir" -bytes "$bytes" -repeat "$repeat"
			done
		done
		for build in $order; do
			echo "round $round: $build $transport hold $conns" >&2
			run "$round" "$build" "$transport" hold -conns "$conns" -ramp-timeout 120s
		done
	done
done

# Medians [min–max] over the rounds; new / old and wss / ws are each round's
# ratio, median [min–max], except wss / ws of held sessions: a ws session's
# few KiB are within the garbage collector's swings at 2,000 sessions, so
# that ratio is of the medians.
{
	echo "# summary: median [min-max] over the rounds (MB/s; hold: bytes of private dirty per session)"
	sort -k4,4 -k3,3 -k2,2 "$rows" | awk '
	function stats(a, n,   i, j, t) {
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		med = (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
		return sprintf("%s [%s-%s] n=%d", num(med), num(a[1]), num(a[n]), n)
	}
	function num(x) { return (x >= 100 || x <= -100) ? sprintf("%.0f", x) : sprintf("%.3g", x) }
	function median(k,   n, r) { n = 0; for (r in rnd) if ((k, r) in v) a[++n] = v[k, r]; stats(a, n); return med }
	{ v[$4 " " $3 " " $2, $1] = $5; keys[$4 " " $3 " " $2] = 1; rnd[$1] = 1 }
	END {
		for (k in keys) { n = 0; for (r in rnd) if ((k, r) in v) a[++n] = v[k, r]; print "# " k " " stats(a, n) }
		for (k in keys) {
			split(k, p, " "); if (p[3] != "new") continue
			o = p[1] " " p[2] " old"; n = 0
			for (r in rnd) if ((k, r) in v && (o, r) in v) a[++n] = v[k, r] / v[o, r]
			if (n) print "# " p[1] " " p[2] " new/old per round " stats(a, n)
		}
		for (k in keys) {
			split(k, p, " "); if (p[2] != "wss") continue
			w = p[1] " ws " p[3]; n = 0
			if (p[1] ~ /^hold/) {
				m = median(k); mw = median(w)
				if (mw > 0) print "# " p[1] " " p[3] " wss/ws of the medians " num(m / mw)
				continue
			}
			for (r in rnd) if ((k, r) in v && (w, r) in v) a[++n] = v[k, r] / v[w, r]
			if (n) print "# " p[1] " " p[3] " wss/ws per round " stats(a, n)
		}
	}' | sort
} >>"$txt"
cat "$txt"
