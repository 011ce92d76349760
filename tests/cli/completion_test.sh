#!/usr/bin/env bash
# The shell completions (deploy/completion/): bash's against simulated command lines
# and a real daemon (handler names, task ids), both kept in step with `taskrt --help`
# (every subcommand and long option the CLI has, and no other), zsh's syntax.
# Usage: completion_test.sh BIN_DIR
set -uo pipefail
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$HERE/../../deploy/completion
source "$HERE/../testing/stop_pid.sh"
export PATH="$BIN:$PATH"
FAILED=0
fail() { echo "FAIL: $*" >&2; FAILED=$((FAILED + 1)); }

DIR=$(mktemp -d /tmp/taskrt-completion.XXXXXX)
export TASKRT_SOCKET=$DIR/taskrt.sock
"$BIN/taskrtd" --socket "$TASKRT_SOCKET" --cpu-workers 1 --quiet &
DAEMON_PID=$!
cleanup() { stop_pid "$DAEMON_PID" 100 taskrtd; rm -rf "$DIR"; }
trap cleanup EXIT
for ((i = 0; i < 100; i++)); do [[ -S $TASKRT_SOCKET ]] && break; sleep 0.1; done

source "$SRC/taskrt.bash"
# complete WORDS...: the candidates bash offers for the last word.
complete_words() {
  COMP_WORDS=("$@")
  COMP_CWORD=$(($# - 1))
  COMPREPLY=()
  _taskrt
  printf '%s\n' "${COMPREPLY[@]}"
}
expect_has() {  # expect_has WHAT WORD CANDIDATES
  grep -qxF -- "$2" <<<"$3" || fail "$1: '$2' not offered (got: $(tr '\n' ' ' <<<"$3"))"
}

expect_has "subcommand" submit "$(complete_words taskrt su)"
expect_has "subcommand after a global option" trace "$(complete_words taskrt --socket x tr)"
expect_has "list option" --state "$(complete_words taskrt list --st)"
expect_has "state names" timed-out "$(complete_words taskrt list --state t)"
expect_has "output formats" json "$(complete_words taskrt -o j)"
expect_has "exec option" --resume-failed "$(complete_words taskrt exec --res)"
expect_has "handler names from the daemon" sys.noop "$(complete_words taskrt submit sys.n)"
id=$(taskrt submit sys.noop --wait -o json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
expect_has "task ids from the daemon" "$id" "$(complete_words taskrt status "${id:0:3}")"

# In step with --help: every subcommand and each one's long options, both ways.
help_subcommands=$(taskrt --help | sed -n '/^Subcommands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }' | sort)
script_subcommands=$(grep -oP 'local subcommands="\K[^"]+' "$SRC/taskrt.bash" | tr ' ' '\n' | sort)
zsh_subcommands=$(grep -oE "^        '[a-z]+:" "$SRC/_taskrt" | tr -d " ':" | sort)
[[ $help_subcommands == "$script_subcommands" ]] ||
  fail "bash subcommands differ from --help: $(diff <(echo "$help_subcommands") <(echo "$script_subcommands") | tr '\n' ' ')"
[[ $help_subcommands == "$zsh_subcommands" ]] ||
  fail "zsh subcommands differ from --help: $(diff <(echo "$help_subcommands") <(echo "$zsh_subcommands") | tr '\n' ' ')"
for sub in $help_subcommands; do
  help_opts=$(taskrt "$sub" --help | sed -n '/^Options:/,/^$/p' | grep -oE -- '--[a-z][a-z-]*' |
    grep -vx -- '--help' | grep -vE -- '^--(json|input-file|json-lines)$' | sort -u)
  # Excludes: clauses repeat option names; --json etc. are checked through submit's own list.
  [[ $sub == submit ]] && help_opts=$(printf '%s\n' $help_opts --json --input-file --json-lines | sort -u)
  script_opts=$(_taskrt_subcommand_opts "$sub" | tr ' ' '\n' | grep -- '^--' | sort -u)
  [[ $help_opts == "$script_opts" ]] ||
    fail "$sub: options differ (< --help, > completion): $(diff <(echo "$help_opts") <(echo "$script_opts") | grep '^[<>]' | tr '\n' ' ')"
  for opt in $help_opts; do
    grep -qE -- "'\*?$opt\[|,$opt\}'" "$SRC/_taskrt" || fail "zsh: $sub $opt missing"
  done
done

if command -v zsh >/dev/null; then
  zsh -n "$SRC/_taskrt" || fail "zsh -n _taskrt"
elif [[ -n ${CI:-} ]]; then
  fail "zsh is not installed (scripts/setup.sh installs it)"
else
  echo "SKIP: zsh is not installed: the zsh completion's syntax is not checked" >&2
fi

[[ $FAILED -eq 0 ]] && echo "completion: all passed"
[[ $FAILED -eq 0 ]]
