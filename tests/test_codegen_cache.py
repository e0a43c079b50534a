"""The object code cache, the generated code on show (IR, optimised IR, assembly, dump directory),
RLXPY_DEBUG, and the target machine."""

import hashlib
import json
import os
import re
import stat
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import pytest

import rlxpy
from rlxpy.codegen import cache as cache_mod
from rlxpy.codegen.cache import default_cache_dir
from rlxpy.codegen.target import host
from rlxpy.errors import CodegenError, RlxError
from rlxpy.models.sam2 import FpnNeckConfig, build_fpn_neck_ir, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights
from test_codegen_neck import fused_neck

CFG = FpnNeckConfig.for_hiera("tiny", image_size=(64, 64), interp="bilinear")
PARAMS = synthetic_fpn_neck_weights(CFG, 2)
INPUTS = synthetic_fpn_neck_inputs(CFG, 2)


def compile_fused(cache, params=PARAMS, cfg=CFG, **options):
    return rlxpy.compile(fused_neck(cfg, params), target="llvm", cache=cache, **options)


def entries(directory: Path) -> list[Path]:
    return sorted((directory / "llvm").glob("*.rlxobj"))


@pytest.fixture
def expected():
    return rlxpy.compile(build_fpn_neck_ir(CFG), PARAMS)(**INPUTS)


def assert_right(exe, expected):
    out = exe(**INPUTS)
    for name in expected:
        assert np.abs(out[name] - expected[name]).max() <= 1e-5 * np.abs(expected[name]).max(), name


# -- hits and misses -----------------------------------------------------------------------------


def test_miss_then_hit(tmp_path, expected):
    first = compile_fused(tmp_path)
    assert first.cache_status == "miss" and "optimise" in first.compile_times
    assert len(entries(tmp_path)) == 1
    second = compile_fused(tmp_path)
    assert second.cache_status == "hit"
    assert "optimise" not in second.compile_times and "codegen" not in second.compile_times
    assert second.llvm_ir == first.llvm_ir
    assert second.optimized_llvm_ir == first.optimized_llvm_ir      # recomputed on demand
    assert "object code: hit" in second.report()
    assert_right(first, expected)
    assert_right(second, expected)


def test_constants_are_not_in_the_key(tmp_path, rng):
    """Kernels take constants by pointer: other weights of the same shapes reuse the entry."""
    compile_fused(tmp_path)
    other = synthetic_fpn_neck_weights(CFG, 9)
    exe = compile_fused(tmp_path, params=other)
    assert exe.cache_status == "hit"
    assert_right(exe, rlxpy.compile(build_fpn_neck_ir(CFG), other)(**INPUTS))
    bigger = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), interp="bilinear")
    assert compile_fused(tmp_path, params=synthetic_fpn_neck_weights(bigger), cfg=bigger).cache_status == "miss"
    assert len(entries(tmp_path)) == 2


def test_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("RLXPY_CACHE_DIR", str(tmp_path))
    exe = compile_fused(False)
    assert exe.cache_status == "off" and entries(tmp_path) == []
    assert compile_fused(True).cache_status == "miss" and len(entries(tmp_path)) == 1


def test_default_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("RLXPY_CACHE_DIR", str(tmp_path / "a"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("RLXPY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "rlxpy"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "rlxpy"


def test_key_covers_the_toolchain_and_machine(monkeypatch):
    from rlxpy.codegen import key as key_mod
    from rlxpy.codegen.isa import host_isa
    from rlxpy.codegen.select import select
    graph = rlxpy.compile(fused_neck(CFG, PARAMS)).graph
    steps = [s for s in select(graph, host_isa()) if s.kind == "native"]
    h = host()
    base = key_mod.module_key(graph.name, steps)
    keys = {base}
    for field, value in [("triple", "aarch64-unknown-linux-gnu"), ("cpu", "generic"),
                         ("features", h.features + ",-fma"), ("opt_level", 2), ("llvm_version", "0.0.0"),
                         ("llvmlite_version", "0.0")]:
        variant = h.__class__(**{**h.__dict__, field: value})
        with monkeypatch.context() as m:
            m.setattr(key_mod, "host", lambda: variant)
            keys.add(key_mod.module_key(graph.name, steps))
    with monkeypatch.context() as m:
        m.setenv("RLXPY_VECTOR_LANES", "4")
        keys.add(key_mod.module_key(graph.name, steps))
    with monkeypatch.context() as m:
        m.setattr(key_mod, "package_digest", lambda: "0" * 64)
        keys.add(key_mod.module_key(graph.name, steps))
    assert len(keys) == 9
    assert key_mod.module_key(graph.name, steps) == base


# -- damaged entries -----------------------------------------------------------------------------


@pytest.mark.parametrize("damage, status", [
    (lambda b: b[: len(b) // 2], r"corrupt \(truncated: payload of \d+ bytes, header says \d+\), recompiled"),
    (lambda b: b[:20], r"corrupt \(truncated header: 20 bytes\), recompiled"),
    (lambda b: b"", r"corrupt \(truncated header: 0 bytes\), recompiled"),
    (lambda b: b[:-100] + bytes(x ^ 0xFF for x in b[-100:]), r"corrupt \(checksum mismatch\), recompiled"),
    (lambda b: b"ELF!" + b[4:], r"corrupt \(not an rlxpy object cache entry\), recompiled"),
    (lambda b: b[:8] + b"\x63\x00\x00\x00" + b[12:], rf"corrupt \(format 99, expected {cache_mod.FORMAT}\), recompiled"),
])
def test_damaged_entries_are_recompiled(tmp_path, expected, damage, status):
    compile_fused(tmp_path)
    entry, = entries(tmp_path)
    entry.write_bytes(damage(entry.read_bytes()))
    exe = compile_fused(tmp_path)
    assert re.fullmatch(status, exe.cache_status), exe.cache_status
    assert_right(exe, expected)
    assert compile_fused(tmp_path).cache_status == "hit"          # rewritten whole


ENTRY_HEADER = struct.Struct("<8sI32sQ32s")       # magic, format, key, payload length, payload sha256


def forge(path: Path, damage_object=lambda o: o, damage_meta=lambda m: m) -> None:
    """Rewrite an entry with damaged object code (or header fields) and a checksum that matches:
    well-formed as an entry, as someone with write access to the cache could make it."""
    data = path.read_bytes()
    magic, fmt, key, length, _ = ENTRY_HEADER.unpack_from(data)
    payload = data[ENTRY_HEADER.size:]
    assert len(payload) == length
    (meta_len,) = struct.unpack_from("<I", payload)
    meta = json.loads(payload[4:4 + meta_len])
    obj_start = 4 + meta_len
    obj, ir = payload[obj_start:obj_start + meta["object_bytes"]], payload[obj_start + meta["object_bytes"]:]
    obj = damage_object(obj)
    meta = damage_meta({**meta, "object_bytes": len(obj)})
    header = json.dumps(meta).encode()
    payload = struct.pack("<I", len(header)) + header + obj + ir
    path.write_bytes(ENTRY_HEADER.pack(magic, fmt, key, len(payload), hashlib.sha256(payload).digest()) + payload)


def _rename_first_kernel(obj: bytes) -> bytes:
    name = re.search(rb"rlx_fpn_neck_fused_\w+?\0", obj).group()
    return obj.replace(name, name[:-2] + b"X\0")


@pytest.mark.parametrize("damage, why", [
    (lambda o: b"\x7fELG" + o[4:], r"not an ELF file"),
    (lambda o: o[:len(o) // 2], r"\d+ section headers at offset \d+ do not fit in \d+ bytes"),
    (lambda o: o[:4] + b"\x01" + o[5:], r"ELF class 1, data 1, version 1; expected .*"),
    (_rename_first_kernel, r"kernel rlx_fpn_neck_fused_\w+ is not defined, expected a global function in code"),
], ids=["not-elf", "truncated", "32-bit", "kernel-renamed"])
def test_forged_object_code_is_refused_before_llvm_sees_it(tmp_path, expected, damage, why):
    """Object code damaged with its checksum recomputed aborted the process inside LLVM's loader
    (or made a missing kernel a fatal error): now the entry is checked and recompiled."""
    compile_fused(tmp_path)
    entry, = entries(tmp_path)
    forge(entry, damage)
    exe = compile_fused(tmp_path)
    assert re.fullmatch(rf"corrupt \(object code: {why}\), recompiled", exe.cache_status), exe.cache_status
    assert_right(exe, expected)
    assert compile_fused(tmp_path).cache_status == "hit"


def test_object_code_that_fails_the_check_is_never_stored(tmp_path, expected, monkeypatch):
    """Fresh object code goes through the same check as a hit's: an entry that every later compile
    would refuse is not written in the first place."""
    from rlxpy.codegen import backend
    from rlxpy.codegen.objcheck import ObjectCodeError

    def refuse(obj, kernels, triple):
        raise ObjectCodeError("refused by the test")

    monkeypatch.setattr(backend, "check_object", refuse)
    exe = compile_fused(tmp_path)
    assert exe.cache_status == "not stored (its object code fails the loader's check: refused by the test)"
    assert_right(exe, expected)
    assert entries(tmp_path) == []


def test_forged_ir_sizes(tmp_path, expected):
    """The IR is inflated to exactly the size the entry declares, never more (a zip bomb), and a
    header whose sizes do not add up is refused."""
    compile_fused(tmp_path)
    entry, = entries(tmp_path)
    forge(entry, damage_meta=lambda m: {**m, "ir_text_bytes": m["ir_text_bytes"] - 1})
    exe = compile_fused(tmp_path)
    assert exe.cache_status == "hit"
    assert_right(exe, expected)
    with pytest.raises(CodegenError, match="the object cache entry's LLVM IR is damaged"):
        exe.llvm_ir
    forge(entry, damage_meta=lambda m: {**m, "ir_bytes": m["ir_bytes"] + 1})
    assert compile_fused(tmp_path).cache_status == "corrupt (bad header: section sizes do not add up), recompiled"
    forge(entry, damage_meta=lambda m: {k: v for k, v in m.items() if k != "ir_text_bytes"})
    assert compile_fused(tmp_path).cache_status == "corrupt (bad header: 'ir_text_bytes'), recompiled"


def _huge_length(entry: Path) -> None:
    data = bytearray(entry.read_bytes())
    struct.pack_into("<Q", data, 44, 1 << 60)
    entry.write_bytes(data)


@pytest.mark.parametrize("make, status", [
    (lambda e, d: (e.unlink(), e.symlink_to(d / "nowhere")), r"a symbolic link, not a regular file"),
    (lambda e, d: (e.unlink(), e.symlink_to(d)), r"a symbolic link, not a regular file"),
    (lambda e, d: (e.rename(d / "good"), e.symlink_to(d / "good")), r"a symbolic link, not a regular file"),
    (lambda e, d: _huge_length(e), r"declares a payload of 1152921504606846976 bytes, over the limit of \d+"),
    (lambda e, d: e.write_bytes(e.read_bytes() + b"more"),
     r"data after the payload of \d+ bytes the header declares"),
], ids=["dangling-link", "link-to-directory", "link-to-good-entry", "huge-length", "trailing-data"])
def test_entries_that_are_not_plain_entry_files(tmp_path, expected, make, status):
    """A link (dangling, to a directory, even to a good entry) is never followed, and a header is
    never believed beyond the limit; the entry is recompiled and replaced by a regular file."""
    compile_fused(tmp_path / "cache")
    entry, = entries(tmp_path / "cache")
    make(entry, tmp_path)
    exe = compile_fused(tmp_path / "cache")
    assert re.fullmatch(rf"corrupt \({status}\), recompiled", exe.cache_status), exe.cache_status
    assert_right(exe, expected)
    assert stat.S_ISREG(os.lstat(entry).st_mode)
    assert compile_fused(tmp_path / "cache").cache_status == "hit"


def test_a_directory_at_the_entry_path(tmp_path, expected):
    compile_fused(tmp_path)
    entry, = entries(tmp_path)
    entry.unlink()
    (entry / "inside").mkdir(parents=True)
    with pytest.warns(RuntimeWarning, match="cannot write the object cache under .*: .*[Ii]s a directory"):
        exe = compile_fused(tmp_path)
    assert exe.cache_status == "corrupt (a directory, not a regular file), recompiled"
    assert_right(exe, expected)
    assert (entry / "inside").is_dir()                              # left alone, never removed


def test_an_entry_that_cannot_be_opened(tmp_path, expected, monkeypatch):
    """As a file without read permission is to a user other than root (the tests may run as root)."""
    compile_fused(tmp_path)
    entry, = entries(tmp_path)
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if Path(path) == entry:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    exe = compile_fused(tmp_path)
    assert exe.cache_status == "corrupt (cannot be opened: Permission denied), recompiled"
    assert_right(exe, expected)
    monkeypatch.setattr(os, "open", real_open)
    assert compile_fused(tmp_path).cache_status == "hit"


def test_a_fifo_or_dev_zero_entry_neither_hangs_nor_exhausts_memory(tmp_path):
    """An entry that is a FIFO made compile wait forever for a writer; one linked to /dev/zero read
    until memory ran out. In a child process with a memory limit and a timeout, so that neither
    can take the test run with it."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import os, resource, sys
        from pathlib import Path
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        import numpy as np
        import rlxpy
        b = rlxpy.GraphBuilder("g")
        b.output("y", b.scale(b.input("x", (4, 5)), factor=3.0))
        graph, cache = b.build(), Path(sys.argv[1])
        x = np.random.default_rng(5).standard_normal((4, 5)).astype(np.float32)
        print(rlxpy.compile(graph, target="llvm", cache=cache).cache_status, flush=True)
        entry, = (cache / "llvm").glob("*.rlxobj")
        for kind in ("fifo", "zero"):
            entry.unlink()
            os.mkfifo(entry) if kind == "fifo" else entry.symlink_to("/dev/zero")
            exe = rlxpy.compile(graph, target="llvm", cache=cache)
            assert np.array_equal(exe(x=x)["y"], x * np.float32(3.0))
            print(exe.cache_status, flush=True)
    """))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["miss", "corrupt (a FIFO, not a regular file), recompiled",
                                        "corrupt (a symbolic link, not a regular file), recompiled"]


def test_new_cache_directories_are_private(tmp_path):
    """Entries are code the process will run: rlxpy makes the directories 0700 and entries 0600
    (a directory that already exists keeps the mode its owner chose)."""
    compile_fused(tmp_path / "new")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new" / "llvm").stat().st_mode) == 0o700
    entry, = entries(tmp_path / "new")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    (tmp_path / "shared" / "llvm").mkdir(parents=True, mode=0o755)
    compile_fused(tmp_path / "shared")
    assert stat.S_IMODE((tmp_path / "shared" / "llvm").stat().st_mode) == 0o755


def test_an_entry_under_another_key_is_refused(tmp_path, expected):
    compile_fused(tmp_path)
    bigger = FpnNeckConfig.for_hiera("tiny", image_size=(64, 96), interp="bilinear")
    other_params = synthetic_fpn_neck_weights(bigger)
    compile_fused(tmp_path, params=other_params, cfg=bigger)
    a, b = entries(tmp_path)
    a.write_bytes(b.read_bytes())             # right file name, wrong contents
    statuses = {compile_fused(tmp_path).cache_status,
                compile_fused(tmp_path, params=other_params, cfg=bigger).cache_status}
    assert "corrupt (entry was written for another key), recompiled" in statuses


def test_unwritable_cache_warns_and_compiles(tmp_path, expected):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.warns(RuntimeWarning, match="cannot write the object cache under") as caught:
        exe = compile_fused(blocker)
    assert len(caught) == 1
    assert exe.cache_status == "miss"
    assert_right(exe, expected)


def test_two_processes_compiling_at_once(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import hashlib, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import rlxpy
        from rlxpy.models.sam2 import FpnNeckConfig, synthetic_fpn_neck_inputs, synthetic_fpn_neck_weights
        from test_codegen_neck import fused_neck
        cfg = FpnNeckConfig.for_hiera("small", image_size=(128, 96), fuse_type="avg")
        exe = rlxpy.compile(fused_neck(cfg, synthetic_fpn_neck_weights(cfg)), target="llvm")
        out = exe(**synthetic_fpn_neck_inputs(cfg))
        print(exe.cache_status, hashlib.sha256(b"".join(v.tobytes() for v in out.values())).hexdigest())
    """))
    env = dict(os.environ, RLXPY_CACHE_DIR=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    lines = [out.split() for out, _ in results]
    assert {status for status, _ in lines} <= {"miss", "hit"}
    assert len({digest for _, digest in lines}) == 1
    assert len(entries(tmp_path / "cache")) == 1
    assert not list((tmp_path / "cache" / "llvm").glob("*.tmp"))
    again = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert again.stdout.split() == ["hit", lines[0][1]]


# -- generated code on show ----------------------------------------------------------------------


def test_ir_optimised_ir_and_assembly(tmp_path):
    exe = compile_fused(tmp_path)
    symbols = [s.symbol for s in exe.steps]
    for sym in symbols:
        assert f"define void @\"{sym}\"(" in exe.llvm_ir or f"define void @{sym}(" in exe.llvm_ir
        assert sym in exe.optimized_llvm_ir and f"{sym}:" in exe.asm
    # the generic rule's scalar fmuladd, or the micro-kernel's vector fma
    assert "noalias" in exe.llvm_ir and ("llvm.fmuladd.f32" in exe.llvm_ir or "llvm.fma.v" in exe.llvm_ir)
    assert " x float>" in exe.optimized_llvm_ir                     # vector code
    if "+fma" in host().features.split(","):
        assert "vfmadd" in exe.asm


def test_generated_kernel_signature_filecheck(tmp_path):
    """FileCheck over the generated IR of one kernel: pointer attributes, the range, the clamp."""
    b = rlxpy.GraphBuilder("fc")
    x = b.input("x", (4, 6))
    b.output("y", b.scale(x, factor=0.5, name="half"))
    exe = rlxpy.codegen.compile_llvm(b.build(), cache=False)
    checks = tmp_path / "checks.ll"
    checks.write_text(textwrap.dedent(r"""
        ; CHECK-LABEL: define void @"rlx_fc_1_scale_half"
        ; CHECK-SAME: ({{ptr|float\*}} captures(none) noalias nonnull noundef %"out", {{ptr|float\*}} captures(none) noalias nonnull noundef %"in0", i64 %"begin", i64 %"end")
        ; CHECK: icmp sgt i64 %"begin", 0
        ; CHECK: icmp slt i64 %"end", 4
        ; CHECK: fmul float %{{.*}}, 0x3fe0000000000000
        ; CHECK: store float %{{.*}}, {{ptr|float\*}} %{{.*}}, align 4
    """))
    done = subprocess.run([str(Path(sys.executable).parent / "filecheck"), str(checks)], input=exe.llvm_ir,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr + exe.llvm_ir


def test_dump_directory(tmp_path):
    for round_ in ("miss", "hit"):
        d = tmp_path / f"dump-{round_}" / "nested"
        exe = compile_fused(tmp_path / "cache", dump_dir=d)
        assert exe.cache_status == round_
        llvm_files = sorted(p.name for p in d.iterdir() if p.suffix in (".ll", ".s"))
        assert llvm_files == ["fpn_neck_fused.ll", "fpn_neck_fused.opt.ll", "fpn_neck_fused.s"]
        assert (d / "000-input.rlx").exists() and (d / "004-dce.rlx").exists()     # the passes dump there too
        assert (d / "fpn_neck_fused.ll").read_text() == exe.llvm_ir
        assert (d / "fpn_neck_fused.opt.ll").read_text() == exe.optimized_llvm_ir
        assert (d / "fpn_neck_fused.s").read_text() == exe.asm
    with pytest.raises(RlxError, match="dump directory .*: .*Not a directory"):
        compile_fused(False, dump_dir=tmp_path / "dump-hit" / "nested" / "fpn_neck_fused.ll" / "sub")


@pytest.mark.parametrize("level", ["0", "1", "2", "3"])
def test_rlxpy_debug_levels(tmp_path, capfd, monkeypatch, level):
    monkeypatch.setenv("RLXPY_DEBUG", level)
    exe = compile_fused(tmp_path)
    err = capfd.readouterr().err
    if level == "0":
        assert err == ""
        return
    assert "rlxpy llvm: @fpn_neck_fused: llvmlite.ir -> parse, verify -> new pass manager O3" in err
    for s in exe.steps:
        assert f"rlxpy llvm:   %{s.node.name} (fused_matmul) -> native: {s.symbol}" in err
    assert "object code miss" in err
    assert ("// -----// Optimised LLVM IR of @fpn_neck_fused //----- //" in err) == (level >= "2")
    assert ("// -----// LLVM IR of @fpn_neck_fused //----- //" in err) == (level == "3")
    assert ("// -----// Assembly of @fpn_neck_fused //----- //" in err) == (level == "3")


def test_bad_debug_level(monkeypatch):
    monkeypatch.setenv("RLXPY_DEBUG", "loud")
    with pytest.raises(RlxError, match="RLXPY_DEBUG='loud': expected a level 0, 1, 2 or 3"):
        compile_fused(False)


def test_target_machine_uses_host_name_and_features():
    h = host()
    assert h.cpu == llvm.get_host_cpu_name()
    assert h.features == llvm.get_host_cpu_features().flatten() and h.features
    assert h.triple == llvm.get_process_triple() and h.opt_level == 3
