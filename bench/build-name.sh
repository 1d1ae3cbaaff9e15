# bench/build-name.sh, sourced by the bench scripts: build_name prints what
# the binaries of this tree are built from, for every result's -commit:
# `git describe --always`, with -dirty when a tracked file differs from the
# commit, leaving out what benchmarks themselves write (results, the plot,
# the Markdown), so a rerun on an unchanged tree is not called dirty.
build_name() {
	local name
	name=$(git describe --always 2>/dev/null || echo unknown)
	if [[ -n $(git status --porcelain --untracked-files=no -- . ':!bench/results' ':!bench/memory.png' ':!*.md' 2>/dev/null) ]]; then
		name+=-dirty
	fi
	echo "$name"
}
