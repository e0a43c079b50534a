"""A structural check of relocatable ELF object code, made before LLVM's loader is given any.

Object code from the cache is input the process did not make: a damaged entry whose checksum was
recomputed is well-formed as an entry and still aborts the process inside LLVM (RuntimeDyld treats
a bad offset, an unknown relocation, a missing symbol or a huge allocation as a fatal error, not as
an exception). So before an entry is loaded, everything the loader reads is checked here: the ELF
header (64-bit, little-endian, this host's machine, relocatable), every section header and its data
inside the file, the symbol and string tables, every relocation (a type the loader implements,
inside its section, naming a real symbol), every undefined symbol resolvable in this process, and
every kernel the entry lists defined as a global function inside an executable section.

What it cannot check is the machine code itself: code that is well-formed but wrong runs as it is.
The check is written here with `struct` rather than pyelftools because a cache hit in a fresh
process costs ~80 ms and importing pyelftools' ELF reader alone costs more than that; the tests
compare it with pyelftools on real and damaged objects.
"""

from __future__ import annotations

import ctypes
import struct
from functools import lru_cache
from typing import Sequence

import llvmlite.binding as llvm

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")   # ident, type, machine, version, entry, phoff, shoff, flags,
                                            # ehsize, phentsize, phnum, shentsize, shnum, shstrndx
SHDR = struct.Struct("<IIQQQQIIQQ")         # name, type, flags, addr, offset, size, link, info, align, entsize
SYM = struct.Struct("<IBBHQQ")              # name, info, other, shndx, value, size
RELA = struct.Struct("<QQq")                # offset, info, addend

ET_REL = 1
MACHINES = {"x86_64": 62, "aarch64": 183}   # EM_X86_64, EM_AARCH64, by the triple's architecture

SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOTE, SHT_NOBITS = 0, 1, 2, 3, 4, 7, 8
SHT_GROUP, SHT_X86_64_UNWIND, SHT_LLVM_ADDRSIG = 17, 0x70000001, 0x6FFF4C03
SECTION_TYPES = {SHT_NULL: "NULL", SHT_PROGBITS: "PROGBITS", SHT_SYMTAB: "SYMTAB", SHT_STRTAB: "STRTAB",
                 SHT_RELA: "RELA", SHT_NOTE: "NOTE", SHT_NOBITS: "NOBITS", SHT_GROUP: "GROUP",
                 SHT_X86_64_UNWIND: "X86_64_UNWIND", SHT_LLVM_ADDRSIG: "LLVM_ADDRSIG"}
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
SHN_UNDEF, SHN_LORESERVE, SHN_ABS = 0, 0xFF00, 0xFFF1
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2

MAX_ALIGN = 4096                      # the loader allocates each section at its alignment
MAX_NOBITS = 64 << 20                 # zero-filled sections are allocated with no data behind them
# x86-64 relocations RuntimeDyldELF implements, by the bytes each one writes (others are fatal in it)
X86_64_RELOCATIONS = {0: 0, 1: 8, 2: 4, 4: 4, 9: 4, 10: 4, 11: 4, 24: 8, 25: 8, 26: 4, 41: 4, 42: 4}


class ObjectCodeError(ValueError):
    """The object code is not what the loader may be given; the message says why."""


def host_machine(triple: str) -> int | None:
    """The ELF e_machine of a target triple, None for an architecture this check does not know."""
    return MACHINES.get(triple.split("-", 1)[0])


def resolvable(name: str) -> bool:
    """Whether the JIT can resolve an undefined symbol: one added to LLVM, or one of the process
    (MCJIT searches the program's global scope; LLVM itself does only once an engine exists)."""
    if llvm.address_of_symbol(name):
        return True
    try:
        _process()[name]
    except AttributeError:
        return False
    return True


@lru_cache(maxsize=None)
def _process() -> ctypes.CDLL:
    return ctypes.CDLL(None)


def check_object(data: bytes, kernels: Sequence[str], triple: str) -> None:
    """Raise `ObjectCodeError` unless `data` is an object file LLVM can load for `triple` and
    defining each of `kernels` as a function."""
    machine = host_machine(triple)
    if len(data) < EHDR.size:
        raise ObjectCodeError(f"{len(data)} bytes, shorter than an ELF header")
    (ident, e_type, e_machine, e_version, _entry, _phoff, shoff, _flags, ehsize, _phentsize, phnum,
     shentsize, shnum, shstrndx) = EHDR.unpack_from(data)
    if ident[:4] != b"\x7fELF":
        raise ObjectCodeError("not an ELF file")
    if ident[4] != 2 or ident[5] != 1 or ident[6] != 1:
        raise ObjectCodeError(f"ELF class {ident[4]}, data {ident[5]}, version {ident[6]}; "
                              f"expected 64-bit (2), little-endian (1), version 1")
    if e_type != ET_REL:
        raise ObjectCodeError(f"ELF type {e_type}, expected a relocatable object ({ET_REL})")
    if machine is not None and e_machine != machine:
        raise ObjectCodeError(f"ELF machine {e_machine}, expected {machine} for {triple}")
    if e_version != 1 or ehsize != EHDR.size or phnum != 0 or shentsize != SHDR.size:
        raise ObjectCodeError(f"bad ELF header (version {e_version}, header size {ehsize}, "
                              f"{phnum} program headers, section header size {shentsize})")
    if not 0 < shnum < SHN_LORESERVE:
        raise ObjectCodeError(f"{shnum} section headers (extended numbering is never used here)")
    if shoff + shnum * SHDR.size > len(data):
        raise ObjectCodeError(f"{shnum} section headers at offset {shoff} do not fit in {len(data)} bytes")
    sections = [SHDR.unpack_from(data, shoff + i * SHDR.size) for i in range(shnum)]
    if not 0 < shstrndx < shnum or sections[shstrndx][1] != SHT_STRTAB:
        raise ObjectCodeError(f"section name table index {shstrndx} is not a string table")

    for index, (_name, sh_type, _fl, _addr, offset, size, _link, _info, align, _entsize) in enumerate(sections):
        if sh_type not in SECTION_TYPES:
            raise ObjectCodeError(f"section {index} has type {sh_type:#x}, which object code from here never has")
        if sh_type != SHT_NOBITS and offset + size > len(data):
            raise ObjectCodeError(f"section {index} ({size} bytes at offset {offset}) ends past the "
                                  f"{len(data)} bytes of the object")
        if sh_type == SHT_NOBITS and size > MAX_NOBITS:
            raise ObjectCodeError(f"section {index} asks for {size} zero-filled bytes")
        if align > MAX_ALIGN or align & (align - 1):
            raise ObjectCodeError(f"section {index} has alignment {align}")
    names = _Strings(data, sections[shstrndx], "section name table")
    label = [f"{i} ({names.get(s[0])})" for i, s in enumerate(sections)]

    symtabs = [i for i, s in enumerate(sections) if s[1] == SHT_SYMTAB]
    if len(symtabs) != 1:
        raise ObjectCodeError(f"{len(symtabs)} symbol tables, expected 1")
    symtab = sections[symtabs[0]]
    if symtab[9] != SYM.size or symtab[5] % SYM.size or not 0 < symtab[6] < shnum \
            or sections[symtab[6]][1] != SHT_STRTAB:
        raise ObjectCodeError(f"symbol table {label[symtabs[0]]}: bad entry size or string table")
    strings = _Strings(data, sections[symtab[6]], "symbol string table")
    symbols = [SYM.unpack_from(data, symtab[4] + i * SYM.size) for i in range(symtab[5] // SYM.size)]
    functions: dict[str, list[str]] = {}
    for i, (st_name, info, _other, shndx, value, size) in enumerate(symbols):
        name, kind, bind = strings.get(st_name), info & 0xF, info >> 4
        if kind not in (STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE) \
                or bind not in (STB_LOCAL, STB_GLOBAL, STB_WEAK):
            raise ObjectCodeError(f"symbol {i} {name!r} has type {kind} and binding {bind}")
        if shndx == SHN_UNDEF:
            if i and bind == STB_GLOBAL and not resolvable(name):
                raise ObjectCodeError(f"symbol {name!r} is undefined and this process has no such symbol")
            continue
        if shndx == SHN_ABS:
            continue
        if shndx >= shnum or sections[shndx][1] == SHT_NULL:
            raise ObjectCodeError(f"symbol {i} {name!r} is in section {shndx}, which does not exist")
        if kind != STT_SECTION and value + size > sections[shndx][5]:
            raise ObjectCodeError(f"symbol {name!r} ({size} bytes at {value}) ends past its section "
                                  f"{label[shndx]}")
        if kind == STT_FUNC and bind == STB_GLOBAL:
            flags = sections[shndx][2]
            ok = size > 0 and flags & SHF_ALLOC and flags & SHF_EXECINSTR
            functions.setdefault(name, []).append("ok" if ok else f"in non-code section {label[shndx]}")

    for index, (_name, sh_type, _fl, _addr, offset, size, link, info, _align, entsize) in enumerate(sections):
        if sh_type != SHT_RELA:
            continue
        if entsize != RELA.size or size % RELA.size or link != symtabs[0] or not 0 < info < shnum \
                or sections[info][1] not in (SHT_PROGBITS, SHT_X86_64_UNWIND):
            raise ObjectCodeError(f"relocation section {label[index]}: bad entry size, symbol table or target")
        if not sections[info][2] & SHF_ALLOC:
            raise ObjectCodeError(f"relocation section {label[index]} patches {label[info]}, which is not loaded")
        target_size = sections[info][5]
        for r in range(size // RELA.size):
            r_offset, r_info, _addend = RELA.unpack_from(data, offset + r * RELA.size)
            r_sym, r_type = r_info >> 32, r_info & 0xFFFFFFFF
            if r_sym >= len(symbols):
                raise ObjectCodeError(f"relocation {r} of {label[index]} names symbol {r_sym} of {len(symbols)}")
            shndx = symbols[r_sym][3]
            if shndx not in (SHN_UNDEF, SHN_ABS) and not sections[shndx][2] & SHF_ALLOC:
                raise ObjectCodeError(f"relocation {r} of {label[index]} refers to section {label[shndx]}, "
                                      f"which is not loaded")
            width = X86_64_RELOCATIONS.get(r_type) if machine == MACHINES["x86_64"] else 0
            if width is None:
                raise ObjectCodeError(f"relocation {r} of {label[index]} has type {r_type}, "
                                      f"which the loader does not implement")
            if r_offset + width > target_size:
                raise ObjectCodeError(f"relocation {r} of {label[index]} writes at {r_offset}, past the "
                                      f"{target_size} bytes of section {label[info]}")

    for kernel in kernels:
        found = functions.get(kernel, [])
        if found != ["ok"]:
            why = "not defined" if not found else "defined twice" if len(found) > 1 else found[0]
            raise ObjectCodeError(f"kernel {kernel} is {why}, expected a global function in code")


class _Strings:
    """A string table: names looked up by offset, each NUL-terminated inside the table."""

    def __init__(self, data: bytes, header: tuple, what: str):
        offset, size = header[4], header[5]
        self.table, self.what = data[offset:offset + size], what

    def get(self, at: int) -> str:
        end = self.table.find(b"\0", at)
        if at >= len(self.table) or end < 0:
            raise ObjectCodeError(f"name at offset {at} runs past the {len(self.table)}-byte {self.what}")
        return self.table[at:end].decode("utf-8", "replace")
