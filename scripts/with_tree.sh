# Sourced by scripts/h200_run.sh. with_tree DIR CMD...: run CMD with DIR's parity/ first on the path
# (DIR made by `git archive <ref> parity | tar -x -C DIR`), this checkout's benchmarks/ and scripts/ after it.
# `python3 -m` and `-c` put the working directory before PYTHONPATH, so PYTHONPATH=DIR:$PWD alone
# imports this checkout's parity/ when run from its root: every A/B and PARITY_TREE run before
# 2026-12-06 timed one tree twice. PYTHONSAFEPATH (Python >= 3.11; the GPU machine has 3.12) drops that
# entry; the tree actually imported is checked first, and the command refused (status 2) where it is not DIR's.
parity_imported() {   # the directory python3 imports parity from, as the caller's environment sets the path
  python3 -c 'import os, parity; print(os.path.realpath(os.path.dirname(parity.__file__)))'
}
require_tree() {   # status 2 and why, unless python3 with DIR first on the path imports DIR's parity/
  local got
  got=$(PYTHONSAFEPATH=1 PYTHONPATH="$1:$PWD" parity_imported)
  if [ "$got" != "$(realpath "$1/parity" 2>/dev/null)" ]; then
    echo "python3 imports parity from ${got:-nowhere}, not from $1/parity ($(python3 -V 2>&1); PYTHONSAFEPATH needs 3.11)" >&2
    return 2
  fi
}
with_tree() {
  local tree=$1; shift
  require_tree "$tree" || return 2
  PYTHONSAFEPATH=1 PYTHONPATH="$tree:$PWD${PYTHONPATH:+:$PYTHONPATH}" "$@"
}
