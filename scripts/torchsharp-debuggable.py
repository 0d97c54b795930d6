#!/usr/bin/env python3
"""Have the JIT compile TorchSharp's own code as debuggable code, so that its arguments stay alive.

TorchSharp 0.107 hands raw handles to P/Invoke and keeps no reference to their managed owners while
libtorch runs. Once the JIT has optimized a wrapper, a Scalar it made itself (the alpha = 1 of every
a + b, the 0.5 of x.mul(0.5)) or a temporary Tensor argument is unreachable during the native call; a
GC then lets the finalizer free it while libtorch is still reading it. That is a use-after-free: a
segfault (exit 139) of a loaded test process, garbage Scalars ("toFloat") under a GC-hammering thread.

In debuggable code the JIT keeps every argument and local of a method alive to its end, which covers
the native call. The switch is the assembly's DebuggableAttribute: this script sets its Default and
DisableOptimizations bits in the copy of TorchSharp.dll in our output. The attribute's value
is an int32 inside its custom-attribute blob, so the file keeps its size and layout. Our own code stays
optimized. TorchSharp's wrappers are thin: about a microsecond more per op.

Idempotent: a file with both bits already set is left untouched. Usage: torchsharp-debuggable.py DLL [...]
"""
import struct
import sys

import outputfile

# DebuggingModes.Default (JIT tracking) and DisableOptimizations, as a Debug build sets them: the runtime
# compiles debuggable code only with both (measured: DisableOptimizations alone left the bug in place).
DEBUGGABLE = 0x001 | 0x100

# ECMA-335 II.22 tables up to CustomAttribute (0x0C): what we must step over to reach it.
MODULE, TYPEREF, TYPEDEF, FIELDPTR, FIELD, METHODPTR, METHODDEF, PARAMPTR, PARAM, INTERFACEIMPL, \
    MEMBERREF, CONSTANT, CUSTOMATTRIBUTE = range(13)
# Coded indexes (II.24.2.6): the tables each can point into, in tag order (None: tag unused).
TYPEDEF_OR_REF = [TYPEDEF, TYPEREF, 0x1B]
RESOLUTION_SCOPE = [MODULE, 0x1A, 0x23, TYPEREF]
MEMBERREF_PARENT = [TYPEDEF, TYPEREF, 0x1A, METHODDEF, 0x1B]
HAS_CONSTANT = [FIELD, PARAM, 0x17]
HAS_CUSTOM_ATTRIBUTE = [METHODDEF, FIELD, TYPEREF, TYPEDEF, PARAM, INTERFACEIMPL, MEMBERREF, MODULE, 0x0E,
                        0x17, 0x14, 0x11, 0x1A, 0x1B, 0x20, 0x23, 0x26, 0x27, 0x28, 0x2A, 0x2C, 0x2B]
CUSTOM_ATTRIBUTE_TYPE = [None, None, METHODDEF, MEMBERREF, None]
ASSEMBLY_TAG = HAS_CUSTOM_ATTRIBUTE.index(0x20)


class Error(Exception):
    pass


def patch(path):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    u16 = lambda o: struct.unpack_from("<H", data, o)[0]
    u32 = lambda o: struct.unpack_from("<I", data, o)[0]
    if data[:2] != b"MZ" or data[u32(0x3C):u32(0x3C) + 4] != b"PE\0\0":
        raise Error("not a PE file")
    pe = u32(0x3C)
    nsec, opt_size = u16(pe + 6), u16(pe + 20)
    opt = pe + 24
    dirs = opt + (96 if u16(opt) == 0x10B else 112)
    sections = [(u32(s + 12), max(u32(s + 8), u32(s + 16)), u32(s + 20))
                for s in (opt + opt_size + 40 * i for i in range(nsec))]

    def offset(rva):
        for va, size, raw in sections:
            if va <= rva < va + size:
                return raw + rva - va
        raise Error(f"RVA {rva:#x} is in no section")

    cli = offset(u32(dirs + 14 * 8))
    if u32(cli + 64 + 4):   # ManagedNativeHeader: ReadyToRun code, which ignores debuggable-code settings
        raise Error("it holds precompiled (ReadyToRun) code, which this switch does not reach")
    meta = offset(u32(cli + 8))
    if u32(meta) != 0x424A5342:
        raise Error("no CLI metadata")
    ver_len = u32(meta + 12)
    streams = {}
    nstreams = u16(meta + 16 + ver_len + 2)
    pos = meta + 16 + ver_len + 4
    for _ in range(nstreams):
        off = u32(pos)
        end = data.index(b"\0", pos + 8)
        name = data[pos + 8:end].decode()
        streams[name] = meta + off
        pos = pos + 8 + ((end - (pos + 8)) // 4 + 1) * 4
    if "#~" not in streams:
        raise Error("no compressed metadata tables (#~)")
    tables, strings, blobs = streams["#~"], streams["#Strings"], streams["#Blob"]
    heap_sizes = data[tables + 6]
    if heap_sizes & 0x40:
        raise Error("metadata tables with extra data are not handled")
    valid = struct.unpack_from("<Q", data, tables + 8)[0]
    rows, pos = {}, tables + 24
    for t in range(64):
        if valid >> t & 1:
            rows[t] = u32(pos)
            pos += 4
    str_size = 4 if heap_sizes & 1 else 2
    guid_size = 4 if heap_sizes & 2 else 2
    blob_size = 4 if heap_sizes & 4 else 2

    def index(t):
        return 4 if rows.get(t, 0) >= 1 << 16 else 2

    def coded(ts):
        bits = (len(ts) - 1).bit_length()
        return 4 if max(rows.get(t, 0) for t in ts if t is not None) >= 1 << (16 - bits) else 2

    layout = {
        MODULE: [2, str_size, guid_size, guid_size, guid_size],
        TYPEREF: [coded(RESOLUTION_SCOPE), str_size, str_size],
        TYPEDEF: [4, str_size, str_size, coded(TYPEDEF_OR_REF), index(FIELD), index(METHODDEF)],
        FIELDPTR: [index(FIELD)],
        FIELD: [2, str_size, blob_size],
        METHODPTR: [index(METHODDEF)],
        METHODDEF: [4, 2, 2, str_size, blob_size, index(PARAM)],
        PARAMPTR: [index(PARAM)],
        PARAM: [2, 2, str_size],
        INTERFACEIMPL: [index(TYPEDEF), coded(TYPEDEF_OR_REF)],
        MEMBERREF: [coded(MEMBERREF_PARENT), str_size, blob_size],
        CONSTANT: [2, coded(HAS_CONSTANT), blob_size],
        CUSTOMATTRIBUTE: [coded(HAS_CUSTOM_ATTRIBUTE), coded(CUSTOM_ATTRIBUTE_TYPE), blob_size],
    }
    start = {}
    for t in range(CUSTOMATTRIBUTE + 1):
        start[t] = pos
        pos += rows.get(t, 0) * sum(layout[t])

    def row(t, i):   # the columns of row i (1-based) of table t
        o, cols = start[t] + (i - 1) * sum(layout[t]), []
        for w in layout[t]:
            cols.append(u16(o) if w == 2 else u32(o))
            o += w
        return cols

    def string(i):
        return data[strings + i:data.index(b"\0", strings + i)].decode()

    ha_bits = (len(HAS_CUSTOM_ATTRIBUTE) - 1).bit_length()
    found = []
    for i in range(1, rows.get(CUSTOMATTRIBUTE, 0) + 1):
        parent, ctor, value = row(CUSTOMATTRIBUTE, i)
        if parent & ((1 << ha_bits) - 1) != ASSEMBLY_TAG or ctor & 7 != 3:
            continue
        klass = row(MEMBERREF, ctor >> 3)[0]
        if klass & 7 != 1:   # MemberRefParent tag 1: a TypeRef
            continue
        _, name, namespace = row(TYPEREF, klass >> 3)
        if (string(namespace), string(name)) == ("System.Diagnostics", "DebuggableAttribute"):
            found.append(blobs + value)
    if len(found) != 1:
        raise Error(f"expected one assembly-level DebuggableAttribute, found {len(found)}")
    blob = found[0]
    # The DebuggableAttribute(DebuggingModes) form: length 8, prolog 0x0001, the int32 modes, no named arguments.
    if data[blob] != 8 or u16(blob + 1) != 1 or u16(blob + 7) != 0:
        raise Error("its DebuggableAttribute is not in the DebuggingModes form")
    modes = u32(blob + 3)
    if modes & DEBUGGABLE == DEBUGGABLE:
        return
    struct.pack_into("<I", data, blob + 3, modes | DEBUGGABLE)
    outputfile.replace(path, data)
    print(f"TorchSharp compiled as debuggable code (arguments kept alive): {path}")


failed = False
for p in sys.argv[1:]:
    try:
        patch(p)
    except (Error, LookupError, ValueError, struct.error) as e:   # LookupError: a missing stream or a bad offset
        print(f"torchsharp-debuggable.py: {p}: {e}", file=sys.stderr)
        failed = True
sys.exit(1 if failed else 0)
