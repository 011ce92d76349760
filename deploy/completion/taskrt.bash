# bash completion of taskrt (installed as share/bash-completion/completions/taskrt).
# Subcommands and options are listed here (a test compares them with `taskrt --help`);
# handler names and task ids come from the daemon (`taskrt handlers`, `taskrt list`).

_taskrt_global_opts="--socket --target --token-file --tls --tls-ca --tls-cert --tls-key
  --tls-server-name --output -o --color --help -h --version"

_taskrt_subcommand_opts() {
  local spec="--class --timeout --priority --label --attempts --retry-backoff --idempotency-key --wait -w"
  case "$1" in
    submit) echo "--json --input-file --json-lines $spec" ;;
    exec) echo "--cwd --env --stdin-file --jobs-file --joblog --resume-failed $spec" ;;
    wait) echo "--timeout" ;;
    list) echo "--limit -n --state --handler --label" ;;
    watch) echo "--timeout" ;;
    trace) echo "--since --limit --out -f" ;;
    logs) echo "--follow -f" ;;
    status | cancel | explain | stats | handlers | dashboard) echo "" ;;
  esac
}

_taskrt_daemon_words() {
  # Quietly: completion must not print errors when no daemon answers.
  local args=() i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${COMP_WORDS[i]}" in
      --socket | --target | --token-file | --tls-ca | --tls-cert | --tls-key | --tls-server-name)
        args+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}") ;;
    esac
  done
  taskrt "${args[@]}" --color never "$@" 2>/dev/null | awk 'NR > 1 && $1 != "" { print $1 }'
}

_taskrt() {
  local cur prev sub="" i
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD - 1]}"
  local subcommands="submit exec logs wait status cancel list watch explain stats handlers dashboard trace"
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${COMP_WORDS[i]}" in
      --socket | --target | --token-file | --tls-ca | --tls-cert | --tls-key | \
        --tls-server-name | --output | -o | --color) ((i++)) ;;
      -*) ;;
      *) sub="${COMP_WORDS[i]}"; break ;;
    esac
  done

  case "$prev" in
    --socket | --token-file | --tls-ca | --tls-cert | --tls-key | --input-file | --json-lines | \
      --jobs-file | --joblog | --stdin-file | --out)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --cwd) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --output | -o) COMPREPLY=($(compgen -W "table json" -- "$cur")); return ;;
    --color) COMPREPLY=($(compgen -W "auto always never" -- "$cur")); return ;;
    --class) COMPREPLY=($(compgen -W "auto cpu io" -- "$cur")); return ;;
    --state)
      COMPREPLY=($(compgen -W "queued running succeeded failed cancelled timed-out" -- "$cur"))
      return ;;
    --handler) COMPREPLY=($(compgen -W "$(_taskrt_daemon_words handlers)" -- "$cur")); return ;;
    -f) [[ $sub == trace ]] && COMPREPLY=($(compgen -f -- "$cur")); [[ $sub == trace ]] && return ;;
    --target | --tls-server-name | --timeout | --priority | --label | --attempts | \
      --retry-backoff | --idempotency-key | --env | --limit | -n | --since | --json)
      return ;;
  esac

  if [[ -z "$sub" ]]; then
    if [[ "$cur" == -* ]]; then
      COMPREPLY=($(compgen -W "$_taskrt_global_opts" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$subcommands" -- "$cur"))
    fi
    return
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(_taskrt_subcommand_opts "$sub") $_taskrt_global_opts" -- "$cur"))
    return
  fi
  case "$sub" in
    submit) COMPREPLY=($(compgen -W "$(_taskrt_daemon_words handlers)" -- "$cur")) ;;
    wait | status | cancel | explain | logs)
      COMPREPLY=($(compgen -W "$(_taskrt_daemon_words list --limit 50)" -- "$cur")) ;;
    exec) COMPREPLY=($(compgen -c -- "$cur")) ;;
  esac
}

complete -F _taskrt taskrt
