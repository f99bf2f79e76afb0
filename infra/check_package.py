"""Check a built function directory statically: every ELF file is for the function's CPU, and
none needs a glibc symbol newer than the Lambda runtime's.

    python infra/check_package.py .aws-sam/build/ClassifyFunction            # x86_64
    python infra/check_package.py .aws-sam/build/ClassifyFunction --arch arm64

This is how an arm64 (Graviton) build is checked on a machine that cannot run aarch64 code.
Prints one line per problem (the file, and the symbol that needs a newer glibc) and exits 1 if
there is any. Reads the ELF headers itself: standard library only, no binutils.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Amazon Linux 2023, under Lambda's python3.12+ runtimes, has glibc 2.34.
RUNTIME_GLIBC = (2, 34)
# ELF e_machine of each Lambda architecture (the template's Architecture values).
MACHINES = {"x86_64": 62, "arm64": 183}
MACHINE_NAMES = {62: "x86_64", 183: "aarch64", 3: "i386", 40: "arm"}

ELF_MAGIC = b"\x7fELF"
SHT_DYNSYM = 11
SHT_GNU_VERNEED = 0x6FFFFFFE
SHT_GNU_VERSYM = 0x6FFFFFFF


@dataclass(frozen=True)
class Section:
    kind: int
    offset: int
    size: int
    link: int


@dataclass(frozen=True)
class ElfFile:
    """What the check needs of one 64-bit little-endian ELF file."""

    machine: int
    # (symbol, version) for each undefined-or-defined dynamic symbol bound to a GLIBC_ version
    glibc_symbols: tuple[tuple[str, tuple[int, int]], ...]

    def newest_glibc(self) -> tuple[str, tuple[int, int]] | None:
        """The symbol that needs the newest glibc, with that version; None if none does."""
        return max(self.glibc_symbols, key=lambda item: item[1], default=None)


def read_elf(data: bytes) -> ElfFile | None:
    """Parse `data` if it is an ELF file; None otherwise. Only ELF64 little-endian is read in
    full (both Lambda architectures); other classes report their machine and no symbols."""
    if not data.startswith(ELF_MAGIC) or len(data) < 64:
        return None
    machine = struct.unpack_from("<H", data, 18)[0]
    if data[4] != 2 or data[5] != 1:  # not ELFCLASS64 / ELFDATA2LSB
        return ElfFile(machine=machine, glibc_symbols=())
    section_offset = struct.unpack_from("<Q", data, 0x28)[0]
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for index in range(count):
        start = section_offset + index * entry_size
        _, kind, _, _, offset, size, link, _, _, _ = struct.unpack_from("<IIQQQQIIQQ", data, start)
        sections.append(Section(kind, offset, size, link))
    return ElfFile(machine=machine, glibc_symbols=tuple(glibc_symbols(data, sections)))


def c_string(data: bytes, offset: int) -> str:
    return data[offset : data.index(b"\0", offset)].decode("ascii", "replace")


def glibc_symbols(data: bytes, sections: list[Section]) -> Iterator[tuple[str, tuple[int, int]]]:
    """Dynamic symbols with the GLIBC_2.x version they are bound to (.gnu.version_r)."""
    by_kind = {section.kind: section for section in sections}
    dynsym, versym, verneed = (
        by_kind.get(kind) for kind in (SHT_DYNSYM, SHT_GNU_VERSYM, SHT_GNU_VERNEED)
    )
    if dynsym is None or versym is None or verneed is None:
        return
    versions = {}  # version index -> (2, minor)
    strings = sections[verneed.link].offset
    need = verneed.offset
    while True:
        _, aux_count, _, aux, next_need = struct.unpack_from("<HHIII", data, need)
        entry = need + aux
        for _ in range(aux_count):
            _, _, index, name, next_aux = struct.unpack_from("<IHHII", data, entry)
            version = c_string(data, strings + name)
            if version.startswith("GLIBC_2."):
                minor = version.removeprefix("GLIBC_2.").split(".")[0]
                if minor.isdigit():
                    versions[index] = (2, int(minor))
            entry += next_aux
        if next_need == 0:
            break
        need += next_need
    symbol_strings = sections[dynsym.link].offset
    for number in range(dynsym.size // 24):
        index = struct.unpack_from("<H", data, versym.offset + 2 * number)[0] & 0x7FFF
        if index in versions:
            name = struct.unpack_from("<I", data, dynsym.offset + 24 * number)[0]
            yield c_string(data, symbol_strings + name), versions[index]


def problems(
    function_dir: Path, architecture: str, glibc: tuple[int, int] = RUNTIME_GLIBC
) -> list[str]:
    """One line per ELF file of the wrong machine or needing a newer glibc than `glibc`."""
    wanted = MACHINES[architecture]
    found = []
    elf_files = 0
    for path in sorted(function_dir.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        with path.open("rb") as handle:
            if handle.read(4) != ELF_MAGIC:
                continue
        elf_files += 1
        where = path.relative_to(function_dir)
        try:
            elf = read_elf(path.read_bytes())
        except (struct.error, ValueError, IndexError):  # offsets past the end: a partial copy
            found.append(f"{where}: a damaged or truncated ELF file")
            continue
        if elf is None:
            found.append(f"{where}: a truncated ELF file (shorter than its 64-byte header)")
            continue
        if elf.machine != wanted:
            machine = MACHINE_NAMES.get(elf.machine, f"machine {elf.machine}")
            found.append(f"{where}: built for {machine}, not {architecture}")
        newest = elf.newest_glibc()
        if newest is not None and newest[1] > glibc:
            symbol, version = newest
            found.append(
                f"{where}: {symbol} needs GLIBC_{version[0]}.{version[1]}, newer than the "
                f"runtime's {glibc[0]}.{glibc[1]}"
            )
    if elf_files == 0:
        found.append(f"{function_dir}: no ELF file at all (numpy and onnxruntime are missing?)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("function_dir", type=Path, help="a built ClassifyFunction directory")
    parser.add_argument("--arch", choices=sorted(MACHINES), default="x86_64")
    args = parser.parse_args(argv)
    found = problems(args.function_dir, args.arch)
    if found:
        print(*found, sep="\n")
        return 1
    print(f"ok: every ELF file is {args.arch} and needs at most glibc 2.34")
    return 0


if __name__ == "__main__":
    sys.exit(main())
