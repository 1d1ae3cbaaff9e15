#!/usr/bin/env bash
# bench/ab.sh OLD: this build of our proxy beside the build of commit OLD and
# the plain relay, in interleaved rounds (the order turning each round), so
# that a change to the engine is judged side by side on the same machine:
#   throughput down and up, one connection (BYTES, REPEAT runs a round)
#   session set-up, 50 at once (2 windows of 5 s)
#   round trips beside 4 bulk sessions (200 connections, one 5 s window)
# Every run's JSON goes to bench/results/side-by-side/ab-vs-OLD.jsonl (out
# of the way of make bench's report, which reads bench/results/*.jsonl); the
# commands, a line per run and each round's ratios to the relay to
# ab-vs-OLD.txt beside it.
#
# Environment: ROUNDS (default 4), REPEAT (default 3), BYTES (default
# 1073741824).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
old=${1:?usage: bench/ab.sh OLD-COMMIT}
rounds=${ROUNDS:-4} repeat=${REPEAT:-3} bytes=${BYTES:-1073741824}
old_commit=$(git rev-parse --short "$old") || exit 1
results=bench/results/side-by-side
mkdir -p "$results"
txt=$results/ab-vs-$old_commit.txt jsonl=$results/ab-vs-$old_commit.jsonl

tmp=$(mktemp -d /tmp/bench-ab.XXXXXX) || exit 1
trap 'git worktree remove --force "$tmp/tree" 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o bin/loadtest ./loadtest || exit 1
go build -o bin/websockify ./cmd/websockify || exit 1
# shellcheck source=bench/build-name.sh
. bench/build-name.sh
new_commit=$(build_name)
git worktree add --detach "$tmp/tree" "$old" >/dev/null || exit 1
(cd "$tmp/tree" && go build -o "$tmp/websockify-$old_commit" ./cmd/websockify) || exit 1

{
	echo "# our proxy, this build ($new_commit, new) beside $old_commit (old) and the relay, $rounds interleaved rounds"
	echo "# $(date -u +%Y-%m-%dT%H:%MZ); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, Linux $(uname -r)"
	echo "# commands (PROXY: bin/websockify or $tmp/websockify-$old_commit; the relay: -relay instead of -proxy-cmd):"
	echo "#   bin/loadtest throughput -proxy-cmd 'PROXY {listen} {target}' -dir down|up -bytes $bytes -repeat $repeat -json"
	echo "#   bin/loadtest setup -proxy-cmd 'PROXY {listen} {target}' -concurrency 50 -duration 5s -repeat 2 -json"
	echo "#   bin/loadtest echo -proxy-cmd 'PROXY {listen} {target}' -conns 200 -background 4 -duration 5s -repeat 1 -json"
	echo "# every run: round, proxy, measurement, then loadtest's summary line"
} >"$txt"
: >"$jsonl"

run() { # ROUND LABEL MEASUREMENT ARGS...
	local round=$1 label=$2 what=$3 line
	shift 3
	local -a pa=(-proxy-cmd "bin/websockify {listen} {target}" -commit "$new_commit")
	[[ $label == old ]] && pa=(-proxy-cmd "$tmp/websockify-$old_commit {listen} {target}" -commit "$old_commit")
	[[ $label == relay ]] && pa=(-relay -commit "$new_commit")
	line=$(bin/loadtest "$@" "${pa[@]}" -label "$label" -round "$round" -json 2>"$tmp/err" | tee -a "$jsonl")
	echo "$round $label $what $(tail -1 "$tmp/err")" | tee -a "$txt" >&2
	[[ -n $line ]] || echo "$round $label $what: no result" >>"$txt"
}
for ((round = 1; round <= rounds; round++)); do
	order="relay new old"
	((round % 2 == 0)) && order="old new relay"
	for what in down up setup beside; do
		for p in $order; do
			case $what in
			down | up) run "$round" "$p" "$what" throughput -dir "$what" -bytes "$bytes" -repeat "$repeat" ;;
			setup) run "$round" "$p" setup setup -concurrency 50 -duration 5s -repeat 2 ;;
			beside) run "$round" "$p" beside echo -conns 200 -background 4 -duration 5s -repeat 1 ;;
			esac
		done
	done
done

# Each round's new / relay and old / relay, then their medians.
python3 - "$jsonl" >>"$txt" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def figure(r, what):
    if r["mode"] == "throughput":
        return r["mbps"]["median"]
    if r["mode"] == "setup":
        return r["sessions_per_s"]["median"]
    return r["rtt_p50_us"]["median"], r["rtt_p99_us"]["median"]
by = {}
for r in runs:
    what = r.get("dir") or ("beside" if r["mode"] == "echo" else r["mode"])
    by[(r["round"], r["label"], what)] = figure(r, what)
print("\n# each round: new / relay and old / relay (beside: p50 and p99, lower is better)")
table = {}
for (rnd, label, what), v in sorted(by.items()):
    rel = by.get((rnd, "relay", what))
    if label == "relay" or rel is None:
        continue
    q = tuple(a / b for a, b in zip(v, rel)) if what == "beside" else v / rel
    table.setdefault((what, label), []).append(q)
    print(f"round {rnd} {what} {label}/relay: " + (" / ".join(f"{x:.2f}" for x in q) if what == "beside" else f"{q:.2f}"))
print("\n# median [min-max] over the rounds")
for (what, label), qs in sorted(table.items()):
    if what == "beside":
        for i, name in enumerate(("p50", "p99")):
            xs = [q[i] for q in qs]
            print(f"{what} {name} {label}/relay: {statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]")
    else:
        print(f"{what} {label}/relay: {statistics.median(qs):.2f} [{min(qs):.2f}-{max(qs):.2f}]")
EOF
echo "bench: $txt" >&2
