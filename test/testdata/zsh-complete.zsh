# Completes command lines in a real interactive zsh (compinit, the
# completion functions in FPATHDIR) and prints the matches offered for
# each, one a line, between <hits> and </hits>, after a <line N> header,
# for test/install_test.go:
#
#   zsh -f zsh-complete.zsh FPATHDIR 'websockify --tok' 'websockify --web '
#
# The interactive shell runs in a pty (zsh/zpty); compadd is wrapped so
# that the matches are printed as they are added instead of being listed.
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PROMPT='>' RPROMPT=''; unsetopt zle_bracketed_paste"
zpty -w z "fpath=(${(q)1} \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z 'compadd () {
  if (( ${@[(I)-(O|A|D)*]} )); then builtin compadd "$@"; return; fi
  local -a hits; builtin compadd -A hits "$@"
  (( $#hits )) && print -rl -- "" "<hits>" $hits "</hits>"
  builtin compadd "$@"
}'
zpty -w z 'print SETUP-DONE'
zpty -r z line '*SETUP-DONE*' # the echo of the command
zpty -r z line '*SETUP-DONE*' # its output
shift
n=0
for cmdline in "$@"; do
  (( n++ ))
  print -r -- "<line $n>"
  zpty -w -n z "$cmdline"$'\t'
  # Up to 10 s for the first matches, then a moment for the rest.
  out=
  for i in {1..50}; do
    while zpty -r -t z more; do out+=$more; done
    if [[ $out == *'</hits>'* ]]; then
      sleep 0.3
      while zpty -r -t z more; do out+=$more; done
      break
    fi
    sleep 0.2
  done
  print -r -- "$out"
  zpty -w -n z $'\C-e\C-u' # clear the line for the next one
  sleep 0.2
  while zpty -r -t z more; do :; done
done
zpty -d z
