"""Fill the git-ignored ``peers/`` directory with the engines' routing kernels that benchmarks/peers.py
times and judges, from the package index, and check that their C++ extensions can load under a given
torch before a GPU call is spent on them.

python3 scripts/fetch_peers.py [--dest peers] [--cache DIR] [--keep-arch 90]
python3 scripts/fetch_peers.py --abi-check TORCH_LIB_DIR [--dest peers]
python3 scripts/fetch_peers.py --load-check PYTHON [--dest peers]

Which wheels, and why these versions (the GPU machine has torch 2.11.0+cu130, see
/work/.library/device): a torch C++ extension (``TORCH_LIBRARY``, not the stable ``aoti_torch_*`` ABI)
loads only under a torch that exports every C++ symbol it was linked against *and* lays out its
inline-accessed classes the same way.

- ``sglang-kernel`` 0.4.4 (cu13): topk_softmax, topk_sigmoid and moe_fused_gate in
  ``sgl_kernel/sm90/common_ops.abi3.so``, and the pure-Triton ``triton_kernels``. Later wheels do not
  serve torch 2.11: 0.4.5 drops moe_fused_gate; 0.4.6 / 0.4.7 link ``torch::Library::_def`` with
  ``torch::headeronly::Tag`` (2.11 has ``at::Tag``); 0.4.8 requires torch 2.13 and 0.4.9 / 0.4.10
  torch 2.14.1, whose TensorImpl no longer holds PyObjectSlot's interpreter pointer: every field
  read inline after it (sizes, strides, numel, dtype) sits 8 bytes earlier than under 2.11, so those
  builds cannot be made to load by supplying the few missing symbols. 0.4.0 and the ``sgl-kernel``
  0.3.x wheels are CUDA 12 builds (libcudart.so.12, absent beside torch cu130).
- ``vllm`` 0.26.0 (requires torch==2.11.0, cu13): topk_softmax, topk_sigmoid and grouped_topk in
  ``vllm/_moe_C_stable_libtorch.abi3.so``, registered through torch's stable ABI.

The device tool carries at most 64 MiB with the tree (about 40 MiB of it tracked files), so the two
extensions travel thinned and compressed: every CUDA binary (cubin) in their ``.nv_fatbin`` section
built for an architecture other than the H200's sm_90 has its bytes zeroed (the headers stay, so the
driver still walks each fat binary and picks the sm_90 cubin, or JIT-compiles the PTX, which stays,
where a fat binary has none), and the result is stored as ``*.so.xz``: SGLang's 19.5 -> 4.3 MiB, vLLM's
45.3 -> 13.8 MiB. benchmarks.peers decompresses them on first use. peers/MANIFEST.json records each
file's wheel and the size and sha256 of the wheel's bytes and of the thinned ones.

--abi-check lists, for each extension in --dest, the C++ symbols of torch (c10::, at::, torch::) it
imports that the libraries in TORCH_LIB_DIR (libc10*.so, libtorch*.so) do not export: an extension
with any such symbol fails to load there with ``undefined symbol``. It needs ``nm`` (binutils). An
empty list is necessary, not sufficient (the layout question above is not visible in symbols).

--load-check loads each extension in --dest with ``torch.ops.load_library`` under another Python (one
with the GPU machine's torch, installed here: a CUDA build of torch imports without a GPU) and prints
the schemas of the ops benchmarks.peers calls. The extensions link the CUDA driver (libcuda.so.1), which
a machine without a GPU lacks: a stub whose every entry point answers "no device" is compiled for the
check (it needs ``gcc``). Loading registers the ops and resolves every symbol; it runs no kernel.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.peers import EXTENSION_PEERS, SGL_LIBRARY, VLLM_LIBRARY, _library  # noqa: E402  (where the adapters look)


@dataclass(frozen=True)
class Wheel:
    requirement: str           # what pip downloads, e.g. "vllm==0.26.0"
    members: tuple[str, ...]   # files or folders (ending in /) to take from it
    compress: tuple[str, ...]  # members stored as .xz


WHEELS = (
    Wheel("sglang-kernel==0.4.4", (SGL_LIBRARY.as_posix(), "triton_kernels/"), (SGL_LIBRARY.as_posix(),)),
    Wheel("vllm==0.26.0", (VLLM_LIBRARY.as_posix(),), (VLLM_LIBRARY.as_posix(),)),
)
TORCH_NAMESPACES = ("_ZN3c10", "_ZNK3c10", "_ZN2at", "_ZNK2at", "_ZN5torch", "_ZNK5torch", "_ZNR5torch")


def download(requirement: str, cache: Path) -> Path:
    """The wheel for ``requirement`` in ``cache`` (downloaded without dependencies if absent)."""
    name = requirement.split("==")[0].replace("-", "_")
    version = requirement.split("==")[1]
    found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    if not found:
        print(f"downloading {requirement} (no dependencies) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(cache),
                        requirement], check=True)
        found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    if not found:
        raise SystemExit(f"fetch_peers: pip left no wheel for {requirement} in {cache}")
    return found[0]


def _take(archive: zipfile.ZipFile, member: str) -> list[str]:
    names = [n for n in archive.namelist() if (n.startswith(member) if member.endswith("/") else n == member)]
    if not names:
        raise SystemExit(f"fetch_peers: {archive.filename} has no {member}")
    return names


FATBIN_MAGIC = 0xBA55ED50
CUBIN, PTX = 2, 1


@dataclass(frozen=True)
class FatbinEntry:
    offset: int  # of the payload, in the bytes given to fatbin_entries
    size: int
    kind: int    # CUBIN or PTX
    arch: int    # e.g. 90 for sm_90 (and sm_90a)


def elf_section(data: bytes, name: str) -> tuple[int, int]:
    """(file offset, size) of a section of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx][4]
    for name_at, _, _, _, offset, size in headers:
        start = names + name_at
        if data[start:data.index(b"\0", start)].decode() == name:
            return offset, size
    raise KeyError(f"no section {name}")


def fatbin_entries(section: bytes) -> list[FatbinEntry]:
    """The entries of every fat binary in a .nv_fatbin section (fat binaries sit 8-byte aligned;
    each: magic, version, header size, size; then entries: kind, version, header size, payload
    size, ..., the architecture at byte 28 of the entry's header)."""
    entries, pos = [], 0
    while pos + 16 <= len(section):
        magic, _, header, size = struct.unpack_from("<IHHQ", section, pos)
        if magic != FATBIN_MAGIC:
            pos += 8
            continue
        at, end = pos + header, pos + header + size
        while at < end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", section, at)
            arch, = struct.unpack_from("<I", section, at + 28)
            entries.append(FatbinEntry(at + entry_header, payload, kind, arch))
            at += entry_header + payload
        pos = end
    return entries


def keep_arch(data: bytes, arch: int) -> tuple[bytes, int]:
    """The extension with every cubin not built for ``arch`` zeroed (headers and PTX kept), and
    the number of bytes zeroed."""
    offset, size = elf_section(data, ".nv_fatbin")
    entries = fatbin_entries(data[offset:offset + size])
    out = bytearray(data)
    zeroed = 0
    for e in entries:
        if e.kind == CUBIN and e.arch != arch:
            out[offset + e.offset: offset + e.offset + e.size] = bytes(e.size)
            zeroed += e.size
    if not any(e.kind == CUBIN and e.arch == arch for e in entries):
        raise SystemExit(f"fetch_peers: no sm_{arch} cubin in this extension; nothing would be left to run")
    return bytes(out), zeroed


def _digest(data: bytes) -> dict:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def extract(wheel: Wheel, path: Path, dest: Path, arch: int | None) -> dict[str, dict]:
    """Copy the wheel's members under dest (extensions thinned to ``arch`` and compressed, as .xz);
    their manifest entries."""
    manifest = {}
    with zipfile.ZipFile(path) as archive:
        for member in wheel.members:
            for name in _take(archive, member):
                if name.endswith("/"):
                    continue
                data = archive.read(name)
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                entry = {"wheel": path.name, "requirement": wheel.requirement, **_digest(data)}
                if name in wheel.compress:
                    if arch is not None:
                        data, zeroed = keep_arch(data, arch)
                        entry.update(kept_arch=arch, zeroed_bytes=zeroed, thinned=_digest(data))
                    print(f"  {name}: {entry['bytes'] / 2**20:.1f} MiB"
                          + (f", {zeroed / 2**20:.1f} MiB of other architectures zeroed" if arch is not None else "")
                          + ", compressing ...", flush=True)
                    target = target.with_name(target.name + ".xz")
                    data = lzma.compress(data, preset=6)
                target.write_bytes(data)
                manifest[str(target.relative_to(dest))] = entry
    return manifest


def exported(lib_dir: Path) -> set[str]:
    """Dynamic symbols that the torch libraries in lib_dir define."""
    names: set[str] = set()
    libs = sorted(lib_dir.glob("libc10*.so")) + sorted(lib_dir.glob("libtorch*.so"))
    if not libs:
        raise SystemExit(f"fetch_peers: no libc10*.so / libtorch*.so in {lib_dir}")
    for lib in libs:
        out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True)
        names.update(line.split()[-1] for line in out.stdout.splitlines() if line.strip())
    return names


def imported(extension: Path) -> set[str]:
    """The dynamic symbols an extension imports (versions stripped)."""
    out = subprocess.run(["nm", "-D", "--undefined-only", str(extension)], capture_output=True, text=True, check=True)
    return {line.split()[-1].split("@")[0] for line in out.stdout.splitlines() if line.strip()}


def imported_torch_symbols(extension: Path) -> list[str]:
    """The torch C++ symbols (c10::, at::, torch::) that an extension imports."""
    return sorted(n for n in imported(extension) if n.startswith(TORCH_NAMESPACES))


def extensions(dest: Path) -> list[tuple[Path, Path]]:
    """(the name under dest, the file to read) of each extension in dest, packed ones unpacked as
    benchmarks.peers unpacks them."""
    found = [f.relative_to(dest) for f in sorted(dest.rglob("*.so.xz")) + sorted(dest.rglob("*.so"))]
    return [(name, _library(dest, name.with_suffix("") if name.suffix == ".xz" else name)) for name in found]


def abi_check(dest: Path, lib_dir: Path) -> int:
    """Print each extension's torch symbols missing from lib_dir; the number of extensions with any."""
    have = exported(lib_dir)
    failing = 0
    for name, so in extensions(dest):
        missing = [s for s in imported_torch_symbols(so) if s not in have]
        failing += bool(missing)
        print(f"{name}: {len(missing)} torch symbols missing from {lib_dir}")
        for s in missing:
            shown = subprocess.run(["c++filt", s], capture_output=True, text=True).stdout.strip() or s
            print(f"    {shown}")
    return failing


LOAD_SCRIPT = """
import json, os, sys, torch
print("torch", torch.__version__)
failed = 0
for so in sys.argv[1:]:
    try:
        torch.ops.load_library(so)
        print("loaded", so)
    except Exception as e:
        failed += 1
        print("FAILED", so, "|", e, "|", e.__cause__)
for ns, op in json.loads(os.environ["PARITY_PEER_OPS"]):
    packet = getattr(getattr(torch.ops, ns), op, None)
    print(f"{ns}.{op}:", packet.default._schema if packet is not None else "not registered")
sys.exit(1 if failed else 0)
"""


def load_check(dest: Path, python: str) -> int:
    """Load every extension in dest under ``python`` with a stub CUDA driver; its exit status."""
    libraries = [str(so) for name, so in extensions(dest) if name.suffix == ".xz"]
    symbols = {n for so in libraries for n in imported(Path(so)) if n.startswith("cu") and n[2:3].isupper()}
    ops = [(namespace, op) for (_, namespace), table in EXTENSION_PEERS.items() for op, _ in table.values()]
    with tempfile.TemporaryDirectory() as tmp:
        stub = Path(tmp) / "stub.c"
        stub.write_text("".join(f"int {s}(void) {{ return 100; }}\n" for s in sorted(symbols)))  # 100: no device
        subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(Path(tmp) / "libcuda.so.1"),
                        str(stub)], check=True)
        env = {**os.environ, "LD_LIBRARY_PATH": tmp + os.pathsep + os.environ.get("LD_LIBRARY_PATH", ""),
               "PARITY_PEER_OPS": json.dumps(ops)}
        return subprocess.run([python, "-c", LOAD_SCRIPT, *libraries], env=env).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", type=Path, default=ROOT / "peers", help="the carry directory (default: peers/)")
    p.add_argument("--cache", type=Path, help="where wheels are kept (default: a temporary folder)")
    p.add_argument("--keep-arch", type=int, default=90, metavar="SM",
                   help="keep the cubins of this architecture only (default 90, the H200's; 0 keeps all)")
    p.add_argument("--abi-check", type=Path, metavar="TORCH_LIB_DIR",
                   help="only check the extensions already in --dest against these torch libraries")
    p.add_argument("--load-check", metavar="PYTHON",
                   help="only load the extensions already in --dest under this Python's torch")
    args = p.parse_args(argv)
    if args.abi_check:
        return 1 if abi_check(args.dest, args.abi_check) else 0
    if args.load_check:
        return load_check(args.dest, args.load_check)
    args.dest.mkdir(parents=True, exist_ok=True)
    cache_dir = args.cache or Path(tempfile.mkdtemp(prefix="parity-peers-"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    try:
        for wheel in WHEELS:
            manifest.update(extract(wheel, download(wheel.requirement, cache_dir), args.dest, args.keep_arch or None))
    finally:
        if args.cache is None:
            shutil.rmtree(cache_dir, ignore_errors=True)
    (args.dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    size = sum(f.stat().st_size for f in args.dest.rglob("*") if f.is_file())
    print(f"{args.dest}: {len(manifest)} files, {size / 2**20:.1f} MiB (the device tool carries at most 64 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
