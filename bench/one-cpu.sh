#!/usr/bin/env bash
# bench/one-cpu.sh BEFORE AFTER: two builds of our proxy side by side, each
# pinned to CPU 0 with loadtest (client and target) on CPU 1, session set-up
# one at a time and 50 at once, alternating over 3 rounds. It measured the
# GOMAXPROCS floor of 2 (cmd/websockify/main.go) against the build before
# it; raw output goes to bench/results/one-cpu-gomaxprocs.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: bench/one-cpu.sh BEFORE-BINARY AFTER-BINARY}
after=${2:?usage: bench/one-cpu.sh BEFORE-BINARY AFTER-BINARY}
out=bench/results/one-cpu-gomaxprocs.txt
# shellcheck source=bench/build-name.sh
. bench/build-name.sh
{
	echo "# Our proxy pinned to CPU 0 (-proxy-cpus 0), loadtest (client and target) on CPU 1: $before beside $after, alternating."
	echo "# $(date -u +%FT%TZ); $(nproc --all) cores; commit $(build_name)."
	for round in 1 2 3; do
		for bin in "$before" "$after"; do
			for conc in 1 50; do
				echo "\$ taskset -c 1 bin/loadtest setup -proxy-cpus 0 -concurrency $conc -proxy-cmd '$bin {listen} {target}' -duration 4s -repeat 1"
				taskset -c 1 bin/loadtest setup -proxy-cpus 0 -concurrency "$conc" -proxy-cmd "$bin {listen} {target}" \
					-duration 4s -repeat 1 2>&1 | tail -1
			done
		done
	done
} | tee "$out"
