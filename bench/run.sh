#!/usr/bin/env bash
# bench/run.sh: the benchmark behind `make bench`.
#
# Builds bin/websockify and bin/loadtest, then measures side by side on this
# machine: our proxy, Debian's Python websockify, the npm websockify (Node)
# and the plain Go TCP relay (the protocol-free reference), ours and the
# relay in interleaved rounds for the targets' figures (one-connection
# throughput, set-up rate; the report judges each target on its worst
# round), with the client's and the target's CPU beside the proxy's; then our proxy
# over wss (label ours-wss), stalled sessions (ours and the relay), round
# trips beside bulk transfers (ours and the relay, taking turns) and session
# set-up with the TokenFile and TokenRedis token plugins beside a fixed
# target (ours-fixed, ours-tokenfile, ours-tokenredis, in rounds), and the
# cost of --metrics-listen: set-up rate and one-connection throughput without
# and with it, scraped every second (ours-metrics-off, ours-metrics-on, in
# rounds). Every result records the commit the binaries were built from. Each proxy's raw
# results go to
# bench/results/<label>.jsonl (kept in git, so the tables can be regenerated);
# proxy logs go to bench/out/ (not kept). The tables in BENCHMARKS.md are then
# rewritten from all of bench/results/*.jsonl.
#
# Environment:
#   BENCH_PROXIES="relay python node ours"
#                                       which proxies to run (others keep their
#                                       last results in bench/results/)
#   BENCH_QUICK=1                       a smoke run: small sizes, short windows,
#                                       results in bench/out/quick/, BENCHMARKS.md
#                                       left alone
#   BENCH_ONLY=tokens                   only the token plugin rounds (when ours is
#                                       measured); everything else keeps its last
#                                       results, as with BENCH_PROXIES
#   BENCH_ONLY=metrics                  only the --metrics-listen rounds, likewise
#   BENCH_ONLY=pinned                   only the pinned rounds (below), likewise
#   BENCH_PIN=1                         each proxy on CPU 0 (taskset -c 0), the
#                                       client and the target on CPU 1, recorded
#                                       in every result (the scale run with
#                                       --workers is left unpinned)
#   BENCH_PIN_ROUNDS=0                  leave out the pinned rounds: the main
#                                       comparison (ours and the relay, in
#                                       rounds) repeated with the proxy on CPU 0
#                                       and the client and target on CPU 1
#                                       (labels ours-pinned, relay-pinned), run
#                                       by default when the run is not pinned
#   OURS_CMD='bin/websockify {listen} {target}'
#                                       how our proxy is started; it takes Python
#                                       websockify's positional form
#
# Everything is bounded: each measurement has its own deadlines inside
# loadtest, and `timeout` below is the last resort. All traffic is on
# 127.0.0.1. The whole run takes about 25 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

started=$(date +%s)
proxies=${BENCH_PROXIES:-relay python node ours}
quick=${BENCH_QUICK:-0}
only=${BENCH_ONLY:-}
pin=${BENCH_PIN:-0}
pin_rounds=${BENCH_PIN_ROUNDS:-1}
case $only in
"" | tokens | metrics | pinned) ;;
*)
	echo "bench: BENCH_ONLY=$only: want tokens, metrics or pinned, or unset for everything" >&2
	exit 2
	;;
esac
ours_cmd=${OURS_CMD:-"bin/websockify {listen} {target}"}
results=bench/results
out=bench/out
[[ $quick == 1 ]] && results=$out/quick
mkdir -p "$results" "$out"

say() { printf '\n== %s\n' "$*" >&2; }

# BENCH_PIN=1: loadtest (the client, and the target it starts) under
# taskset on CPU 1, the proxy it starts on CPU 0 (-proxy-cpus).
pin_client=() pin_proxy=()
if [[ $pin == 1 ]]; then
	if ! command -v taskset >/dev/null; then
		echo "bench: BENCH_PIN=1 needs taskset (util-linux)" >&2
		exit 2
	fi
	if (($(getconf _NPROCESSORS_ONLN) < 2)); then
		echo "bench: BENCH_PIN=1 needs two CPUs; this machine has $(getconf _NPROCESSORS_ONLN)" >&2
		exit 2
	fi
	pin_client=(taskset -c 1) pin_proxy=(-proxy-cpus 0)
fi

# Kernel settings changed for a run, as FILE=VALUE, put back by
# restore_sysctls (and on exit, however the script ends).
restore=()
restore_sysctls() {
	local r
	for r in "${restore[@]}"; do
		echo "${r#*=}" >"${r%%=*}"
	done
	restore=()
}
# The Redis server of the token rounds, stopped by stop_redis (and on exit).
redis_pid=
stop_redis() {
	if [[ -n $redis_pid ]]; then
		kill "$redis_pid" 2>/dev/null
		wait "$redis_pid" 2>/dev/null
		redis_pid=
	fi
}
trap 'restore_sysctls; stop_redis' EXIT

say "building bin/loadtest and bin/websockify"
go build -o bin/loadtest ./loadtest || exit 1
if ! go build -o bin/websockify ./cmd/websockify; then
	echo "bench: bin/websockify does not build; our proxy is not measured this time" >&2
	proxies=${proxies//ours/}
fi
if [[ -n $only ]]; then
	if [[ " $proxies " != *" ours "* ]]; then
		echo "bench: BENCH_ONLY=$only measures our proxy, and ours is not measured this time" >&2
		exit 1
	fi
	proxies=ours
fi

if [[ " $proxies " == *" python "* && ! -x /usr/bin/websockify ]]; then
	say "installing Debian's websockify"
	{ apt-get update && apt-get install -y websockify; } || {
		echo "bench: could not install websockify; Python is not measured" >&2
		proxies=${proxies//python/}
	}
fi
# What the binaries were built from, recorded in every result (-commit).
# shellcheck source=bench/build-name.sh
. bench/build-name.sh
commit=$(build_name)
say "measuring the build of $commit"

# wss: our proxy with a self-signed ECDSA P-256 certificate (made afresh,
# in bench/out/), the client speaking wss://.
wss_pem=$PWD/$out/wss.pem
if [[ " $proxies " == *" ours "* && -z $only ]]; then
	if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
		-keyout "$out/wss-key.pem" -out "$out/wss-cert.pem" 2>/dev/null; then
		cat "$out/wss-cert.pem" "$out/wss-key.pem" >"$wss_pem"
	else
		echo "bench: openssl could not make a certificate; wss is not measured" >&2
		wss_pem=
	fi
fi
wss_cmd=${ours_cmd/"{listen}"/"--cert '$wss_pem' {listen}"}

python_version=$(dpkg-query -W -f='${Version}' websockify 2>/dev/null || true)

# The npm websockify, into bench/node/ (not kept in git). Its last release,
# 0.7.1, asks for ws >=0.4.27 and reads client.upgradeReq, which ws 3.0
# removed, so with today's ws it fails on its first handshake: ws is pinned
# to the last 1.x. Its websockify.js ignores the host of
# [source_addr:]source_port and listens on every interface; the preloaded
# bench/node-loopback.cjs pins that listener to 127.0.0.1.
node_dir=bench/node
node_js=$node_dir/node_modules/websockify/websockify.js
node_ws() { # the ws version websockify.js actually loads
	(cd "$node_dir/node_modules/websockify" && node -p "require('ws/package.json').version") 2>/dev/null
}
if [[ " $proxies " == *" node "* ]]; then
	if [[ ! -f $node_js ]] && command -v npm >/dev/null; then
		say "installing the npm websockify 0.7.1 with ws 1.1.5"
		mkdir -p "$node_dir"
		timeout 300 npm install --prefix "$node_dir" --no-audit --no-fund websockify@0.7.1 ws@1.1.5 >&2
	fi
	if [[ ! -f $node_js ]] || ! command -v node >/dev/null; then
		echo "bench: no node or no $node_js; Node websockify is not measured" >&2
		proxies=${proxies//node/}
	elif [[ $(node_ws) != 1.1.5 ]]; then
		echo "bench: $node_js loads ws $(node_ws), not 1.1.5; Node websockify is not measured (rm -r $node_dir to reinstall)" >&2
		proxies=${proxies//node/}
	fi
fi
# For the report header, also when only other proxies run this time.
if [[ -f $node_js ]] && command -v node >/dev/null; then
	node_version="$(cd "$node_dir/node_modules/websockify" && node -p "require('./package.json').version") (npm; ws $(node_ws); Node $(node --version))"
fi
node_cmd="node --require '$PWD/bench/node-loopback.cjs' '$PWD/$node_js' {listen} {target}"

# Sizes. Python moves data through 4 KiB reads in pure Python, and Node's
# up direction runs at tens of MB/s: 256 MiB keeps their throughput runs to
# seconds. The many-connection runs spread the bytes over many_conns
# connections opened before the clock starts; over 100 connections both fell
# to 20-30 MB/s on a busy machine, so they move 64 MiB there.
big=$((1 << 30)) small=$((256 << 20)) smaller=$((64 << 20))
windows=3 window=5s tput_repeat=5 many_repeat=3 many_conns=100 hold_conns=9900 echo_conns=1000
# wss_hold_conns: held wss sessions. stall_conns: stalled sessions (ours and
# the relay). beside_*: rounds of round trips over beside_conns connections
# beside beside_bulk bulk sessions, one window each, ours and the relay
# taking turns.
wss_hold_conns=2000 stall_conns=1000 beside_rounds=3 beside_conns=200 beside_bulk=4
stall_args=()
if [[ $quick == 1 ]]; then
	big=$((64 << 20)) small=$((16 << 20)) smaller=$((16 << 20))
	windows=1 window=2s tput_repeat=2 many_repeat=1 hold_conns=300 echo_conns=100
	wss_hold_conns=300 stall_conns=200 beside_rounds=1 beside_conns=100
	stall_args=(-cpu-window 3s -plateau-timeout 20s -resume-deep 1)
fi
# tput_bytes LABEL CONNS: bytes per throughput run.
tput_bytes() {
	case $1 in
	python | node) if (($2 > 1)); then echo "$smaller"; else echo "$small"; fi ;;
	*) echo "$big" ;;
	esac
}

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
	local logname=$label-$mode a prev=
	for a in "$@"; do # throughput logs are named by direction and connections
		[[ $prev == -dir ]] && logname+=-$a
		[[ $prev == -conns && $mode == throughput ]] && logname+=-${a}conns
		[[ $prev == -background ]] && logname+=-beside
		[[ $prev == -round ]] && logname+=-round$a
		prev=$a
	done
	# How each proxy is started: loadtest fills in {listen} and {target}.
	local -a pa
	case $label in
	ours) pa=(-proxy-cmd "$ours_cmd") ;;
	ours-wss) pa=(-proxy-cmd "$wss_cmd" -tls) ;;
	python) pa=(-proxy-cmd "/usr/bin/websockify {listen} {target}") ;;
	node) pa=(-proxy-cmd "$node_cmd") ;;
	relay) pa=(-relay) ;;
	ours-fixed | ours-tokenfile | ours-tokenredis) pa=("${tok_args[@]}") ;;
	ours-metrics-off | ours-metrics-on) pa=("${met_args[@]}") ;;
	ours-pinned) pa=(-proxy-cmd "$ours_cmd") ;;
	relay-pinned) pa=(-relay) ;;
	esac
	local -a pc=("${pin_client[@]}") pp=("${pin_proxy[@]}")
	[[ $label == *-pinned ]] && pc=(taskset -c 1) pp=(-proxy-cpus 0)
	say "$label: $mode $*"
	timeout --kill-after=10 900 "${pc[@]}" bin/loadtest "$mode" "${pa[@]}" "${pp[@]}" -label "$label" -commit "$commit" -json \
		-proxy-log "$out/$logname.log" "$@" >>"$out/$label.jsonl.partial" ||
		echo "bench: $label $mode exited with status $? (recorded in the results)" >&2
}

# wss runs as a proxy of their own (ours-wss), right after ours in the same
# loops, when ours runs.
if [[ " $proxies " == *" ours "* && -n $wss_pem && -z $only ]]; then
	proxies+=" ours-wss"
fi
has() { [[ " $proxies " == *" $1 "* ]]; }

# Session set-up with token plugins: our proxy with a fixed target
# (ours-fixed), with a TokenFile of tok_lines lines (ours-tokenfile) and with
# TokenRedis (ours-tokenredis; the same tokens in a redis-server of its own),
# in tok_rounds interleaved rounds, the order turning each round, so drifts
# in the machine's load fall on all three alike. The target listens on a
# port fixed before the rounds, so the tokens can name it; the client asks
# for /?token=$tok_name in every run, the fixed-target ones included, so the
# requests are the same bytes.
tok_rounds=5 tok_windows=2 tok_lines=10000 tok_name=bench
[[ $quick == 1 ]] && tok_rounds=2 tok_windows=1
tok_labels= # the labels the rounds measured, for their results files
tok_args=() # loadtest's proxy flags for the label measure runs
token_rounds() {
	local port rport file=$out/tokens-$tok_lines.txt redis_ok=0 round i v
	local -a ports variants=(fixed tokenfile tokenredis)
	mapfile -t ports < <(bin/loadtest freeport -n 2)
	if ((${#ports[@]} != 2)); then
		echo "bench: no free loopback ports; the token rounds are not measured" >&2
		return
	fi
	port=${ports[0]} rport=${ports[1]}
	say "token rounds: $tok_lines-line token file $file, target on 127.0.0.1:$port, redis on 127.0.0.1:$rport"
	# Random-looking tokens, each naming another loopback port; the bench
	# token in the middle.
	awk -v n="$tok_lines" -v name="$tok_name" -v port="$port" 'BEGIN {
		srand(20261201)
		for (i = 1; i <= n; i++) {
			if (i == int(n / 2)) { printf "%s: 127.0.0.1:%d\n", name, port; continue }
			p = port
			while (p == port) p = 1024 + int(rand() * 64000)
			printf "%08x%08x: 127.0.0.1:%d\n", int(rand() * 4294967296), int(rand() * 4294967296), p
		}
	}' >"$file"
	if [[ $(grep -c "^$tok_name: 127.0.0.1:$port\$" "$file") != 1 || $(wc -l <"$file") != "$tok_lines" ]]; then
		echo "bench: $file is not as meant; the token rounds are not measured" >&2
		return
	fi
	# The same tokens as Redis keys, loaded in one pipe (RESP SET commands).
	if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
		redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --protected-mode yes \
			--logfile "$PWD/$out/redis.log" --dir "$PWD/$out" >/dev/null 2>&1 &
		redis_pid=$!
		for ((i = 0; i < 50; i++)); do
			[[ $(redis-cli -h 127.0.0.1 -p "$rport" ping 2>/dev/null) == PONG ]] && break
			sleep 0.1
		done
		awk -F': ' '{ printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length($1), $1, length($2), $2 }' "$file" |
			timeout 30 redis-cli -h 127.0.0.1 -p "$rport" --pipe >/dev/null 2>&1
		if [[ $(redis-cli -h 127.0.0.1 -p "$rport" get "$tok_name" 2>/dev/null) == "127.0.0.1:$port" &&
			$(redis-cli -h 127.0.0.1 -p "$rport" dbsize 2>/dev/null) == "$tok_lines" ]]; then
			redis_ok=1
		else
			echo "bench: redis-server on 127.0.0.1:$rport did not take the tokens (see $out/redis.log); TokenRedis is not measured" >&2
			stop_redis
		fi
	else
		echo "bench: no redis-server or redis-cli; TokenRedis is not measured" >&2
	fi
	for v in "${variants[@]}"; do
		rm -f "$out/ours-$v.jsonl.partial" "$out/ours-$v"-*.log
	done
	tok_labels="ours-fixed ours-tokenfile"
	((redis_ok)) && tok_labels+=" ours-tokenredis"
	# Our proxy's command without its target, with the plugin's options.
	local bare=${ours_cmd/" {target}"/}
	for ((round = 1; round <= tok_rounds; round++)); do
		for ((i = 0; i < 3; i++)); do
			v=${variants[(round - 1 + i) % 3]}
			case $v in
			fixed) tok_args=(-proxy-cmd "$ours_cmd") ;;
			tokenfile) tok_args=(-proxy-cmd "${bare/"{listen}"/"--token-plugin TokenFile --token-source '$file' {listen}"}") ;;
			tokenredis)
				((redis_ok)) || continue
				# The Redis server's CPU is read beside the proxy's.
				tok_args=(-proxy-cmd "${bare/"{listen}"/"--token-plugin TokenRedis --token-source 127.0.0.1:$rport {listen}"}"
					-backend-pid "$redis_pid")
				;;
			esac
			tok_args+=(-target "127.0.0.1:$port" -path "/?token=$tok_name")
			measure "ours-$v" setup -concurrency 50 -duration "$window" -repeat "$tok_windows" -round "$round"
		done
	done
	stop_redis
}

# The cost of --metrics-listen: our proxy without metrics (ours-metrics-off)
# and with them (ours-metrics-on), scraped every second over the whole run
# as Prometheus would (the scraper also runs without them, against a port
# nothing listens on), in met_rounds interleaved rounds, the order turning
# each round: session set-up, then one-connection throughput down and up.
# Each scrape answered is counted; the counts go to
# $results/ours-metrics-scrapes.txt.
met_rounds=7 met_windows=2 met_repeat=3
[[ $quick == 1 ]] && met_rounds=2 met_windows=1 met_repeat=1
met_labels= # the labels the rounds measured, for their results files
met_args=() # loadtest's proxy flags for the label measure runs
# scrape_every_second PORT FILE: appends a line to FILE per scrape answered.
scrape_every_second() {
	while sleep 1; do
		curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$1/metrics" && echo ok >>"$2"
	done
}
metrics_rounds() {
	local round i v mport scraper tally mode dir n
	local -a variants=(off on)
	if ! command -v curl >/dev/null; then
		echo "bench: no curl to scrape with; the metrics rounds are not measured" >&2
		return
	fi
	for v in "${variants[@]}"; do
		rm -f "$out/ours-metrics-$v.jsonl.partial" "$out/ours-metrics-$v"-*.log
	done
	met_labels="ours-metrics-off ours-metrics-on"
	: >"$out/ours-metrics-scrapes.txt"
	for ((round = 1; round <= met_rounds; round++)); do
		for ((i = 0; i < 2; i++)); do
			v=${variants[(round - 1 + i) % 2]}
			for mode in setup down up; do
				# The scraper runs in both variants, so that its own cost
				# (a curl started every second) falls on both alike; without
				# metrics nothing listens on its port and it fails at once.
				mport=$(bin/loadtest freeport -n 1)
				met_args=(-proxy-cmd "$ours_cmd")
				[[ $v == on ]] && met_args=(-proxy-cmd "${ours_cmd/"{listen}"/"--metrics-listen 127.0.0.1:$mport {listen}"}")
				tally=$out/metrics-scrapes.partial
				: >"$tally"
				scrape_every_second "$mport" "$tally" &
				scraper=$!
				if [[ $mode == setup ]]; then
					measure "ours-metrics-$v" setup -concurrency 50 -duration "$window" -repeat "$met_windows" -round "$round"
				else
					measure "ours-metrics-$v" throughput -dir "$mode" -bytes "$big" -repeat "$met_repeat" -round "$round"
				fi
				kill "$scraper" 2>/dev/null
				wait "$scraper" 2>/dev/null
				n=$(wc -l <"$tally")
				echo "round $round $mode, metrics $v: $n scrapes answered" >>"$out/ours-metrics-scrapes.txt"
				say "ours-metrics-$v round $round $mode: $n scrapes answered"
			done
		done
	done
}
# BENCH_ONLY=tokens, metrics or pinned: the loops below find no proxy; only
# those rounds run.
tokens_on=0 metrics_on=0 pinned_on=0
has ours && [[ -z $only || $only == tokens ]] && tokens_on=1
has ours && [[ -z $only || $only == metrics ]] && metrics_on=1
# The pinned rounds need ours and the relay, two CPUs and taskset, and a run
# that is not pinned already.
if has ours && [[ -z $only || $only == pinned ]] && [[ $pin != 1 && $pin_rounds != 0 ]]; then
	if [[ -z $only ]] && ! has relay; then
		: # the relay is not measured this time: nothing to pair ours with
	elif ! command -v taskset >/dev/null || (($(getconf _NPROCESSORS_ONLN) < 2)); then
		echo "bench: the pinned rounds need taskset and two CPUs; left out" >&2
	else
		pinned_on=1
	fi
fi
[[ -n $only ]] && proxies=
for p in $proxies; do
	rm -f "$out/$p.jsonl.partial" "$out/$p"-*.log
done

# The main comparison, ours against the relay: one-connection throughput
# down and up and session set-up, in main_rounds interleaved rounds, the
# order turning each round (ours first, then the relay first, ...), so that
# drift in the machine's load falls on both alike. The report pairs the
# rounds by number and judges each target on its worst round.
main_rounds=5 main_tput_repeat=3 main_windows=2
[[ $quick == 1 ]] && main_rounds=2 main_tput_repeat=1 main_windows=1
# main_rounds_of A B: the rounds for the pair of labels A and B (A first in
# odd rounds, B first in even ones); labels not measured this time are
# left out.
main_rounds_of() {
	local round mode p pair
	for ((round = 1; round <= main_rounds; round++)); do
		pair="$1 $2"
		((round % 2 == 0)) && pair="$2 $1"
		for mode in down up setup; do
			for p in $pair; do
				has "$p" || continue
				if [[ $mode == setup ]]; then
					measure "$p" setup -concurrency 50 -duration "$window" -repeat "$main_windows" -round "$round"
				else
					measure "$p" throughput -dir "$mode" -bytes "$big" -repeat "$main_tput_repeat" -round "$round"
				fi
			done
		done
	done
}
main_rounds_of ours relay
# Pinned rounds: the same comparison with the proxy on CPU 0 and loadtest
# (the client, and the target it starts) on CPU 1, under labels of their
# own, so the report can set the ratios with the cores shared and apart side
# by side. The targets are judged on the shared rounds above.
pin_labels=
if ((pinned_on)); then
	pin_labels="ours-pinned relay-pinned"
	for p in $pin_labels; do
		rm -f "$out/$p.jsonl.partial" "$out/$p"-*.log
	done
	proxies_before_pinned=$proxies
	proxies+=" $pin_labels"
	main_rounds_of ours-pinned relay-pinned
	proxies=$proxies_before_pinned
fi
# The others, far from the targets, one pass each, mode by mode across
# proxies, so all of them see the machine in the same state; wss on the
# same bytes and runs as the ws rounds' proxies.
for dir in down up; do
	for p in $proxies; do
		case $p in ours | relay | ours-wss) continue ;; esac
		measure "$p" throughput -dir "$dir" -bytes "$(tput_bytes "$p" 1)" -repeat "$tput_repeat"
	done
	has ours-wss && measure ours-wss throughput -dir "$dir" -bytes "$big" -repeat "$tput_repeat"
done
for dir in down up; do
	for p in $proxies; do
		[[ $p == ours-wss ]] && continue
		# Python forks a process per connection: give its opens time.
		t=()
		[[ $p == python ]] && t=(-op-timeout 30s)
		measure "$p" throughput -dir "$dir" -conns "$many_conns" -bytes "$(tput_bytes "$p" "$many_conns")" \
			-repeat "$many_repeat" "${t[@]}"
	done
done
for p in $proxies; do
	[[ $p == ours-wss ]] && continue
	# shellcheck disable=SC2046 # ramp_args is meant to split
	measure "$p" echo -conns "$echo_conns" -duration "$window" -repeat "$windows" $(ramp_args "$p")
done
# Round trips beside bulk sessions: ours and the relay take turns, starting
# with each in turn (ours, relay, relay, ours, ...), so drifts in the
# machine's load fall on both alike.
for ((round = 1; round <= beside_rounds; round++)); do
	pair="ours relay"
	((round % 2 == 0)) && pair="relay ours"
	for p in $pair; do
		has "$p" && measure "$p" echo -conns "$beside_conns" -background "$beside_bulk" -duration "$window" -repeat 1
	done
done
for p in $proxies; do
	case $p in ours | relay | ours-wss) continue ;; esac # ours and the relay: in the rounds above
	measure "$p" setup -concurrency 50 -duration "$window" -repeat "$windows"
done
((tokens_on)) && token_rounds
((metrics_on)) && metrics_rounds
for p in $proxies; do
	case $p in
	ours-wss) measure "$p" hold -conns "$wss_hold_conns" -ramp-timeout 120s ;;
	# shellcheck disable=SC2046
	*) measure "$p" hold -conns "$hold_conns" $(ramp_args "$p") ;;
	esac
done
# Stalled sessions: ours, and the relay as the reference (no user-space
# buffer at all). Python would fail past ~500 sessions and Node does no flow
# control, so they are left out.
# Each stalled session leaves megabytes in the kernel's socket buffers
# (the peers' and the proxy's), and loadtest opens only as many as fit
# under 70% of the kernel's TCP pressure threshold (tcp_mem[1]), past which
# Linux shrinks every socket's buffers. As root, the threshold is raised to
# half the machine's memory for these runs (and put back), so that all of
# them can be stalled; without root the run says how many fitted.
tcp_mem_file=/proc/sys/net/ipv4/tcp_mem
old_tcp_mem=$(cat "$tcp_mem_file")
mem_pages=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 4))
read -r _ tcp_press _ <<<"$old_tcp_mem"
if { has ours || has relay; } && ((tcp_press < mem_pages / 2)) &&
	echo "$((mem_pages * 2 / 5)) $((mem_pages / 2)) $((mem_pages * 3 / 5))" >"$tcp_mem_file" 2>/dev/null; then
	restore+=("$tcp_mem_file=$old_tcp_mem")
	say "kernel TCP memory thresholds raised for the stall runs (were $old_tcp_mem pages)"
fi
for p in ours relay; do
	has "$p" && measure "$p" stall -conns "$stall_conns" "${stall_args[@]}"
done
restore_sysctls

# Scale: our proxy with --workers holding scale_conns sessions (label
# ours-workers), every one echoing when it opens and again after the memory
# reading. One (source, destination) pair takes at most about 64,000
# connections and every connection from the proxy to a target has the source
# 127.0.0.1, so the targets listen on four ports behind a TokenFile
# (-target-ports), as a deployment with many VNC servers would. loadtest
# checks the kernel's limits before it starts (port range, nf_conntrack_max,
# tcp_mem, file-max, nr_open, descriptors per proxy process) and refuses a run
# that cannot fit; as root, -tune-kernel raises the sysctls among them for the
# run and puts them back after it.
scale_conns=100000 scale_workers=12
[[ $quick == 1 ]] && scale_conns=2000 scale_workers=2
if [[ " $proxies " == *" ours "* ]]; then
	tune=()
	[[ $(id -u) == 0 ]] && tune=(-tune-kernel)
	rm -f "$out/ours-workers.jsonl.partial" "$out"/ours-workers-*.log
	say "ours-workers: hold -conns $scale_conns over 4 target ports"
	scale_cmd=${ours_cmd/" {target}"/}
	scale_cmd=${scale_cmd/"{listen}"/"--workers $scale_workers --token-plugin TokenFile --token-source {token_file} {listen}"}
	timeout --kill-after=10 900 bin/loadtest hold -proxy-cmd "$scale_cmd" "${tune[@]}" -target-ports 4 \
		-label ours-workers -commit "$commit" -json -proxy-log "$out/ours-workers-hold.log" -conns "$scale_conns" -ramp-timeout 300s \
		>>"$out/ours-workers.jsonl.partial" ||
		echo "bench: ours-workers hold exited with status $? (recorded in the results)" >&2
	proxies+=" ours-workers"
fi

# Latency at a fixed offered rate (open loop): ol_conns sessions, then
# messages at each of ol_rates in turn, sent on a schedule fixed from the
# start whatever the echoes do, latency counted from when each was due;
# full histograms in the results. Ours and the relay take turns, starting
# with each in turn. The committed smoke run of the mode
# ($results/openloop-smoke.jsonl) is superseded by these runs.
ol_rounds=2 ol_conns=200 ol_rates=1k,2k,4k ol_window=5s
[[ $quick == 1 ]] && ol_rounds=1 ol_conns=50 ol_rates=500,1k ol_window=2s
if has ours || has relay; then
	for ((round = 1; round <= ol_rounds; round++)); do
		pair="ours relay"
		((round % 2 == 0)) && pair="relay ours"
		for p in $pair; do
			has "$p" && measure "$p" openloop -conns "$ol_conns" -rates "$ol_rates" -duration "$ol_window" -warmup 1s -round "$round"
		done
	done
	[[ $quick == 1 ]] || rm -f "$results/openloop-smoke.jsonl"
fi

for p in $proxies $tok_labels $met_labels $pin_labels; do
	# Results land in $results only once the proxy's whole set is done.
	[[ -f $out/$p.jsonl.partial ]] && mv "$out/$p.jsonl.partial" "$results/$p.jsonl"
done
[[ -n $met_labels ]] && cp "$out/ours-metrics-scrapes.txt" "$results/"

elapsed=$(($(date +%s) - started))
say "writing BENCHMARKS.md"
shopt -s nullglob
files=("$results"/*.jsonl)
versions=(-python-version "${python_version:-unknown}" -node-version "${node_version:-unknown}"
	-go-version "$(go env GOVERSION)")
if [[ $quick == 1 ]]; then
	bin/loadtest plot -out "$out/quick/memory.png" "${files[@]}"
	bin/loadtest report -md "$out/quick/BENCHMARKS.md" -logs "$out" -plot memory.png "${versions[@]}" "${files[@]}"
	echo "bench: quick run: BENCHMARKS.md left alone; see $out/quick/" >&2
	exit 0
fi
bin/loadtest plot -out bench/memory.png "${files[@]}"
# -elapsed is what a whole `make bench` took: not said after BENCH_ONLY.
[[ -z $only ]] && versions+=(-elapsed "$((elapsed / 60)) min $((elapsed % 60)) s")
bin/loadtest report -md BENCHMARKS.md -logs "$out" -plot bench/memory.png "${versions[@]}" \
	"${files[@]}"
say "done in $((elapsed / 60)) min $((elapsed % 60)) s"
