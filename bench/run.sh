#!/usr/bin/env bash
# bench/run.sh: the benchmark behind `make bench`.
#
# Builds bin/websockify and bin/loadtest, then measures side by side on this
# machine: our proxy, Debian's Python websockify and the plain Go TCP relay
# (the protocol-free reference). Each proxy's raw results go to
# bench/results/<label>.jsonl (kept in git, so the tables can be regenerated);
# proxy logs go to bench/out/ (not kept). The tables in BENCHMARKS.md are then
# rewritten from all of bench/results/*.jsonl.
#
# Environment:
#   BENCH_PROXIES="relay python ours"   which proxies to run (others keep their
#                                       last results in bench/results/)
#   BENCH_QUICK=1                       a smoke run: small sizes, short windows,
#                                       results in bench/out/quick/, BENCHMARKS.md
#                                       left alone
#   OURS_CMD='bin/websockify {listen} {target}'
#                                       how our proxy is started; it takes Python
#                                       websockify's positional form
#
# Everything is bounded: each measurement has its own deadlines inside
# loadtest, and `timeout` below is the last resort. All traffic is on
# 127.0.0.1. The whole run takes about 5 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
proxies=${BENCH_PROXIES:-relay python ours}
quick=${BENCH_QUICK:-0}
ours_cmd=${OURS_CMD:-"bin/websockify {listen} {target}"}
results=bench/results
out=bench/out
[[ $quick == 1 ]] && results=$out/quick
mkdir -p "$results" "$out"

say() { printf '\n== %s\n' "$*" >&2; }

say "building bin/loadtest and bin/websockify"
go build -o bin/loadtest ./loadtest || exit 1
if ! go build -o bin/websockify ./cmd/websockify; then
	echo "bench: bin/websockify does not build; our proxy is not measured this time" >&2
	proxies=${proxies//ours/}
fi

if [[ " $proxies " == *" python "* && ! -x /usr/bin/websockify ]]; then
	say "installing Debian's websockify"
	apt-get update && apt-get install -y websockify || {
		echo "bench: could not install websockify; Python is not measured" >&2
		proxies=${proxies//python/}
	}
fi
python_version=$(dpkg-query -W -f='${Version}' websockify 2>/dev/null || true)

# Sizes. Python moves data through 4 KiB reads in pure Python; 256 MiB keeps
# its throughput runs to seconds.
big=$((1 << 30)) small=$((256 << 20))
windows=3 window=5s tput_repeat=5 hold_conns=9900 echo_conns=1000
if [[ $quick == 1 ]]; then
	big=$((64 << 20)) small=$((16 << 20))
	windows=1 window=2s tput_repeat=2 hold_conns=300 echo_conns=100
fi

# Python websockify forks a process per connection, sets up ~10 sessions a
# second and fails past ~500 sessions: open its sessions few at a time with
# patient step limits so it shows its ceiling rather than our impatience.
ramp_args() {
	case $1 in
	python) echo "-dial-parallel 8 -op-timeout 30s -ramp-timeout 120s" ;;
	relay) echo "-op-timeout 5s -ramp-timeout 120s" ;;
	*) echo "-ramp-timeout 120s" ;;
	esac
}

# measure LABEL MODE [ARGS...]: one loadtest run, its JSON appended to the
# label's results file.
measure() {
	local label=$1 mode=$2
	shift 2
	local logname=$label-$mode
	[[ $mode == throughput ]] && logname+=-${2:-}
	# How each proxy is started: loadtest fills in {listen} and {target}.
	local -a pa
	case $label in
	ours) pa=(-proxy-cmd "$ours_cmd") ;;
	python) pa=(-proxy-cmd "/usr/bin/websockify {listen} {target}") ;;
	relay) pa=(-relay) ;;
	esac
	say "$label: $mode $*"
	timeout --kill-after=10 900 bin/loadtest "$mode" "${pa[@]}" -label "$label" -json \
		-proxy-log "$out/$logname.log" "$@" >>"$out/$label.jsonl.partial" ||
		echo "bench: $label $mode exited with status $? (recorded in the results)" >&2
}

for p in $proxies; do
	rm -f "$out/$p.jsonl.partial" "$out/$p"-*.log
done

# Mode by mode across proxies, so all three see the machine in the same state.
for dir in down up; do
	for p in $proxies; do
		n=$big
		[[ $p == python ]] && n=$small
		measure "$p" throughput -dir "$dir" -bytes "$n" -repeat "$tput_repeat"
	done
done
for p in $proxies; do
	# shellcheck disable=SC2046 # ramp_args is meant to split
	measure "$p" echo -conns "$echo_conns" -duration "$window" -repeat "$windows" $(ramp_args "$p")
done
for p in $proxies; do
	measure "$p" setup -concurrency 50 -duration "$window" -repeat "$windows"
done
for p in $proxies; do
	# shellcheck disable=SC2046
	measure "$p" hold -conns "$hold_conns" $(ramp_args "$p")
done

for p in $proxies; do
	# Results land in $results only once the proxy's whole set is done.
	[[ -f $out/$p.jsonl.partial ]] && mv "$out/$p.jsonl.partial" "$results/$p.jsonl"
done

elapsed=$(($(date +%s) - started))
say "writing BENCHMARKS.md"
shopt -s nullglob
files=("$results"/*.jsonl)
if [[ $quick == 1 ]]; then
	bin/loadtest report -md "$out/quick/BENCHMARKS.md" -logs "$out" -python-version "${python_version:-unknown}" "${files[@]}"
	echo "bench: quick run: BENCHMARKS.md left alone; see $out/quick/" >&2
	exit 0
fi
bin/loadtest report -md BENCHMARKS.md -logs "$out" \
	-python-version "${python_version:-unknown}" \
	-go-version "$(go env GOVERSION)" \
	-elapsed "$((elapsed / 60)) min $((elapsed % 60)) s" \
	"${files[@]}"
say "done in $((elapsed / 60)) min $((elapsed % 60)) s"
