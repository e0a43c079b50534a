"""`objcheck`: object code the JIT is about to load is checked structure by structure.

Real objects (the neck's, random graphs' that call memset and memcpy) pass, agreeing with
pyelftools on every kernel; objects damaged in each structure the loader reads are refused with a
message naming it. The damage is placed with pyelftools, independently of the checker's own parsing.
"""

import io
import struct

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

import rlxpy
from rlxpy.codegen.objcheck import ObjectCodeError, check_object, resolvable
from rlxpy.codegen.target import host
from rlxpy.difftest.generate import seeded_case
from rlxpy.models.sam2 import FpnNeckConfig, synthetic_fpn_neck_weights
from test_codegen_neck import fused_neck

TRIPLE = host().triple
CFG = FpnNeckConfig.for_hiera("tiny", image_size=(64, 64), interp="bilinear")


@pytest.fixture(scope="module")
def neck():
    """(object code, kernel symbols) of the fused tiny neck: four kernels, relocations to constants."""
    exe = rlxpy.compile(fused_neck(CFG, synthetic_fpn_neck_weights(CFG, 3)), target="llvm", cache=False)
    return exe.module.entry.object_code, exe.module.entry.symbols


def elf(data: bytes) -> ELFFile:
    return ELFFile(io.BytesIO(data))


def section_header(data: bytes, name: str) -> int:
    """Byte offset of the named section's header."""
    e = elf(data)
    return e["e_shoff"] + e.get_section_index(name) * e["e_shentsize"]


def symbol_entry(data: bytes, name: str) -> int:
    """Byte offset of the named symbol's entry in .symtab."""
    e = elf(data)
    symtab = e.get_section_by_name(".symtab")
    index = next(i for i, s in enumerate(symtab.iter_symbols()) if s.name == name)
    return symtab["sh_offset"] + index * symtab["sh_entsize"]


def relocation_entry(data: bytes, r: int = 0) -> int:
    e = elf(data)
    rela = next(s for s in e.iter_sections() if isinstance(s, RelocationSection))
    return rela["sh_offset"] + r * rela["sh_entsize"]


def put(data: bytes, offset: int, fmt: str, *values) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def test_real_objects_pass_and_agree_with_pyelftools(neck):
    cases = [neck]
    seeds = iter(range(200))
    externals = set()
    while len(cases) < 6:
        case = seeded_case(next(seeds))
        exe = rlxpy.compile(case.graph, case.params, target="llvm", cache=False)
        if exe.module.entry.symbols:
            cases.append((exe.module.entry.object_code, exe.module.entry.symbols))
    for data, kernels in cases:
        check_object(data, kernels, TRIPLE)
        e = elf(data)
        assert e["e_type"] == "ET_REL" and e.elfclass == 64 and e.little_endian
        functions = {s.name for s in e.get_section_by_name(".symtab").iter_symbols()
                     if s["st_info"]["type"] == "STT_FUNC" and s["st_info"]["bind"] == "STB_GLOBAL"}
        assert set(kernels) <= functions
        externals |= {s.name for s in e.get_section_by_name(".symtab").iter_symbols()
                      if s["st_shndx"] == "SHN_UNDEF" and s.name}
    assert externals <= {"memset", "memcpy"}, externals
    assert resolvable("memset") and resolvable("memcpy") and not resolvable("rlxpy_no_such_symbol")


def _rename(data: bytes, old: str, new: str) -> bytes:
    assert len(old) == len(new) and data.count(old.encode() + b"\0") == 1
    return data.replace(old.encode() + b"\0", new.encode() + b"\0")


DAMAGES = {
    "not ELF": (lambda d, k: b"\x7fELG" + d[4:], r"not an ELF file"),
    "32-bit": (lambda d, k: d[:4] + b"\x01" + d[5:], r"ELF class 1, data 1, version 1; expected 64-bit"),
    "big-endian": (lambda d, k: d[:5] + b"\x02" + d[6:], r"ELF class 2, data 2"),
    "shared object": (lambda d, k: put(d, 16, "<H", 3), r"ELF type 3, expected a relocatable object"),
    "other machine": (lambda d, k: put(d, 18, "<H", 183 if elf(d)["e_machine"] != "EM_AARCH64" else 62),
                      r"ELF machine \d+, expected \d+ for "),
    "program headers": (lambda d, k: put(d, 56, "<H", 1), r"bad ELF header .*1 program headers"),
    "section table past the end": (lambda d, k: put(d, 40, "<Q", len(d) - 64),
                                   r"\d+ section headers at offset \d+ do not fit in \d+ bytes"),
    "no sections": (lambda d, k: put(d, 60, "<H", 0), r"0 section headers \(extended numbering"),
    "name table not strings": (lambda d, k: put(d, 62, "<H", elf(d).get_section_index(".symtab")),
                               r"section name table index \d+ is not a string table"),
    "section past the end": (lambda d, k: put(d, section_header(d, ".ltext") + 32, "<Q", len(d)),
                             r"section \d+ \(\d+ bytes at offset \d+\) ends past the \d+ bytes"),
    "huge offset": (lambda d, k: put(d, section_header(d, ".ltext") + 24, "<Q", 2**63),
                    r"section \d+ .* ends past"),
    "huge alignment": (lambda d, k: put(d, section_header(d, ".ltext") + 48, "<Q", 2**40),
                       r"section \d+ has alignment 1099511627776"),
    "huge zero-filled section": (lambda d, k: put(put(d, section_header(d, ".rodata") + 4, "<I", 8),
                                                  section_header(d, ".rodata") + 32, "<Q", 2**50),
                                 r"section \d+ asks for \d+ zero-filled bytes"),
    "unknown section type": (lambda d, k: put(d, section_header(d, ".rodata") + 4, "<I", 0x12345),
                             r"section \d+ has type 0x12345"),
    "symbol table entry size": (lambda d, k: put(d, section_header(d, ".symtab") + 56, "<Q", 16),
                                r"symbol table \d+ \(\.symtab\): bad entry size or string table"),
    "symbol names out of the table": (lambda d, k: put(d, symbol_entry(d, k[0]), "<I", 10**6),
                                      r"name at offset 1000000 runs past the \d+-byte symbol string table"),
    "kernel renamed": (lambda d, k: _rename(d, k[1], k[1][:-1] + "X"),
                       r"kernel rlx_\w+ is not defined, expected a global function in code"),
    "kernel made local": (lambda d, k: put(d, symbol_entry(d, k[0]) + 4, "<B", 0x02),
                          r"kernel rlx_\w+ is not defined"),
    "kernel made data": (lambda d, k: put(d, symbol_entry(d, k[0]) + 4, "<B", 0x11),
                         r"kernel rlx_\w+ is not defined"),
    "kernel undefined": (lambda d, k: put(d, symbol_entry(d, k[0]) + 6, "<H", 0),
                         r"symbol 'rlx_\w+' is undefined and this process has no such symbol"),
    "kernel in a missing section": (lambda d, k: put(d, symbol_entry(d, k[0]) + 6, "<H", 77),
                                    r"symbol \d+ 'rlx_\w+' is in section 77, which does not exist"),
    "kernel in data": (lambda d, k: put(d, symbol_entry(d, k[0]) + 6, "<H", elf(d).get_section_index(".rodata")),
                       r"symbol 'rlx_\w+' \(\d+ bytes at \d+\) ends past its section \d+ \(\.rodata\)"
                       r"|kernel rlx_\w+ is in non-code section"),
    "kernel past its section": (lambda d, k: put(d, symbol_entry(d, k[0]) + 8, "<Q", 2**32),
                                r"symbol 'rlx_\w+' \(\d+ bytes at 4294967296\) ends past its section"),
    "kernel twice": (lambda d, k: _rename(d, k[1], k[0]) if len(k[0]) == len(k[1]) else
                     put(d, symbol_entry(d, k[1]), "<I", struct.unpack_from("<I", d, symbol_entry(d, k[0]))[0]),
                     r"kernel rlx_\w+ is defined twice"),
    "TLS symbol": (lambda d, k: put(d, symbol_entry(d, k[0]) + 4, "<B", 0x16),
                   r"symbol \d+ 'rlx_\w+' has type 6 and binding 1"),
    "relocation type": (lambda d, k: put(d, relocation_entry(d) + 8, "<I", 200),
                        r"relocation 0 of \d+ \(\.rela\.ltext\) has type 200, which the loader does not implement"),
    "relocation offset": (lambda d, k: put(d, relocation_entry(d, 1), "<Q", 2**40),
                          r"relocation 1 of .* writes at 1099511627776, past the \d+ bytes of section \d+ \(\.ltext\)"),
    "relocation symbol": (lambda d, k: put(d, relocation_entry(d) + 12, "<I", 10**6),
                          r"relocation 0 of .* names symbol 1000000 of \d+"),
    "relocation target": (lambda d, k: put(d, section_header(d, ".rela.ltext") + 44, "<I", 0),
                          r"relocation section .*: bad entry size, symbol table or target"),
    "relocations of a section not loaded": (
        lambda d, k: put(d, section_header(d, ".rela.ltext") + 44, "<I", elf(d).get_section_index(".note.GNU-stack")),
        r"relocation section \d+ \(\.rela\.ltext\) patches \d+ \(\.note\.GNU-stack\), which is not loaded"),
    "relocation to a section not loaded": (
        lambda d, k: put(d, _relocated_symbol(d) + 6, "<H", elf(d).get_section_index(".note.GNU-stack")),
        r"relocation 0 of .* refers to section \d+ \(\.note\.GNU-stack\), which is not loaded"),
    "two symbol tables": (lambda d, k: put(d, section_header(d, ".rodata") + 4, "<I", 2),
                          r"2 symbol tables, expected 1"),
    "section headers swapped": (lambda d, k: _swap_headers(d, ".symtab", ".strtab"),
                                r"section name table index \d+ is not a string table"),
    "section headers zeroed": (lambda d, k: d[:elf(d)["e_shoff"]] + bytes(len(d) - elf(d)["e_shoff"]),
                               r"section name table index 1 is not a string table"),
    "truncated": (lambda d, k: d[: len(d) // 2], r"do not fit|ends past"),
    "empty": (lambda d, k: b"", r"0 bytes, shorter than an ELF header"),
}


def _relocated_symbol(data: bytes) -> int:
    """Byte offset of the symbol entry the first relocation names."""
    e = elf(data)
    rela = next(s for s in e.iter_sections() if isinstance(s, RelocationSection))
    symtab = e.get_section_by_name(".symtab")
    return symtab["sh_offset"] + rela.get_relocation(0)["r_info_sym"] * symtab["sh_entsize"]


def _swap_headers(data: bytes, a: str, b: str) -> bytes:
    ha, hb = section_header(data, a), section_header(data, b)
    out = bytearray(data)
    out[ha:ha + 64], out[hb:hb + 64] = data[hb:hb + 64], data[ha:ha + 64]
    return bytes(out)


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_objects_are_refused(neck, damage):
    data, kernels = neck
    make, message = DAMAGES[damage]
    damaged = make(data, kernels)
    assert damaged != data
    with pytest.raises(ObjectCodeError, match=message):
        check_object(damaged, kernels, TRIPLE)


def test_every_kernel_is_required(neck):
    data, kernels = neck
    with pytest.raises(ObjectCodeError, match="kernel rlx_other_kernel is not defined"):
        check_object(data, (*kernels, "rlx_other_kernel"), TRIPLE)
    check_object(data, kernels[:1], TRIPLE)                 # a subset is fine


def test_random_byte_damage_never_escapes_as_an_exception(neck, rng):
    """Whatever bytes of the headers and tables change, the check refuses with ObjectCodeError or
    accepts; it never fails some other way (an IndexError, a struct.error)."""
    data, kernels = neck
    e = elf(data)
    tables = [(0, 64), (e["e_shoff"], e["e_shnum"] * 64)]
    tables += [(s["sh_offset"], s["sh_size"]) for s in e.iter_sections() if s["sh_type"] in
               ("SHT_SYMTAB", "SHT_STRTAB", "SHT_RELA")]
    for _ in range(300):
        start, size = tables[rng.integers(len(tables))]
        at = start + int(rng.integers(size))
        damaged = bytearray(data)
        damaged[at] ^= int(rng.integers(1, 256))
        try:
            check_object(bytes(damaged), kernels, TRIPLE)
        except ObjectCodeError:
            pass
