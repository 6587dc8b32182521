# Sourced by scripts/h200_run.sh. with_tree DIR CMD...: run CMD with DIR's parity/ first on the path
# (DIR made by `git archive <ref> parity | tar -x -C DIR`), this checkout's benchmarks/ and scripts/ after it.
# `python3 -m` and `-c` put the working directory before PYTHONPATH, so PYTHONPATH=DIR:$PWD alone
# imports this checkout's parity/ when run from its root: every A/B and PARITY_TREE run before
# 2026-12-06 timed one tree twice. PYTHONSAFEPATH (Python >= 3.11; the GPU machine has 3.12) drops that entry; the tree actually
# imported is checked first, and the command refused (status 2) where it is not DIR's.
tree_imported() {   # the directory python3 imports parity from, with DIR first on the path
  PYTHONSAFEPATH=1 PYTHONPATH="$1:$PWD" python3 -c 'import os, parity; print(os.path.realpath(os.path.dirname(parity.__file__)))'
}
with_tree() {
  local tree=$1 got; shift
  got=$(tree_imported "$tree")
  if [ "$got" != "$(realpath "$tree/parity" 2>/dev/null)" ]; then
    echo "with_tree: python3 imports parity from ${got:-nowhere}, not from $tree/parity ($(python3 -V 2>&1); PYTHONSAFEPATH needs 3.11)" >&2
    return 2
  fi
  PYTHONSAFEPATH=1 PYTHONPATH="$tree:$PWD${PYTHONPATH:+:$PYTHONPATH}" "$@"
}
