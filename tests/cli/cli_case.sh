#!/usr/bin/env bash
# One CLI test case: cli_case.sh ok|fail REGEX [--needs PATH] -- COMMAND...
# Passes when the command's exit status matches (0 for ok, non-zero for fail) and its combined output matches
# REGEX (extended grep). Exits 77 (CTest SKIP_RETURN_CODE) when a --needs path is absent.
set -u
expect=$1 regex=$2
shift 2
while [[ $1 != -- ]]; do
  case $1 in
    --needs) [[ -e $2 ]] || { echo "SKIP: $2 is absent"; exit 77; }; shift 2 ;;
    *) echo "cli_case.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
shift
output=$("$@" 2>&1)
status=$?
echo "$output"
if [[ $expect == ok && $status -ne 0 ]]; then echo "FAIL: exit status $status, expected 0"; exit 1; fi
if [[ $expect == fail && $status -eq 0 ]]; then echo "FAIL: exit status 0, expected an error"; exit 1; fi
if ! grep -Eq -- "$regex" <<<"$output"; then echo "FAIL: output does not match /$regex/"; exit 1; fi
echo "PASS"
