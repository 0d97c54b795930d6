#!/usr/bin/env python3
"""Let TorchSharp's native shim load against an older libstdc++ (Debian 12 has GLIBCXX_3.4.30).

libLibTorchSharp.so was linked with GCC 13, whose <iostream> leaves an *unused* reference to
std::ios_base_library_init (GLIBCXX_3.4.32). Nothing calls it, so the only obstacle is the loader's
version check. We mark that version need VER_FLG_WEAK and the symbol STB_WEAK; every other
requirement stays strict. Idempotent; exits 0 without touching a file that needs no change.
Usage: weaken-glibcxx.py LIB.so [...]
"""
import struct, sys

import outputfile

VERSION = b"GLIBCXX_3.4.32"
SYMBOL = b"_ZSt21ios_base_library_initv"


def patch(path):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit(f"{path}: not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    secs = []
    for i in range(shnum):
        name, typ, flags, addr, off, size, link, info, align, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", data, shoff + i * shentsize)
        secs.append(dict(type=typ, off=off, size=size, link=link, info=info, entsize=entsize))

    def cstr(off):
        end = data.index(b"\0", off)
        return bytes(data[off:end])

    changed = False
    # .gnu.version_r (SHT_GNU_verneed = 0x6ffffffe): set the weak flag on the one version need.
    for s in secs:
        if s["type"] != 0x6FFFFFFE:
            continue
        strtab = secs[s["link"]]["off"]
        off = s["off"]
        for _ in range(s["info"]):
            vn_version, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, off)
            aoff = off + vn_aux
            for _ in range(vn_cnt):
                vna_hash, vna_flags, vna_other, vna_name, vna_next = struct.unpack_from("<IHHII", data, aoff)
                if cstr(strtab + vna_name) == VERSION and not vna_flags & 0x2:
                    struct.pack_into("<H", data, aoff + 4, vna_flags | 0x2)
                    changed = True
                aoff += vna_next
            if not vn_next:
                break
            off += vn_next
    # .dynsym (SHT_DYNSYM = 11): make the undefined reference weak so it resolves to null if absent.
    for s in secs:
        if s["type"] != 11:
            continue
        strtab = secs[s["link"]]["off"]
        for i in range(s["size"] // s["entsize"]):
            so = s["off"] + i * s["entsize"]
            st_name, st_info = struct.unpack_from("<IB", data, so)
            if st_name and cstr(strtab + st_name) == SYMBOL and (st_info >> 4) == 1:
                data[so + 4] = (2 << 4) | (st_info & 0xF)
                changed = True
    if changed:
        outputfile.replace(path, data)
        print(f"weakened {VERSION.decode()} need in {path}")


def system_has_version():
    import subprocess
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    libs = [l.split("=>")[-1].strip() for l in out.splitlines() if "libstdc++.so.6 " in l and "x86-64" in l]
    libs = libs or ["/usr/lib/x86_64-linux-gnu/libstdc++.so.6"]
    for lib in libs:
        try:
            with open(lib, "rb") as f:
                if VERSION in f.read():
                    return True
        except OSError:
            pass
    return False


if not system_has_version():
    for p in sys.argv[1:]:
        patch(p)
