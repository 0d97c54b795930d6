using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace Deid.Models.Weights;

/// <summary>A Python global (module + qualified name) referenced by a pickle, e.g. <c>torch.FloatStorage</c>.</summary>
public sealed record PyGlobal(string Module, string Name)
{
    public string FullName => $"{Module}.{Name}";
    public override string ToString() => FullName;
}

/// <summary>
/// A Python dict or OrderedDict, in insertion order. <see cref="State"/> holds what a BUILD opcode attached
/// (state dicts carry <c>{'_metadata': …}</c> there).
/// </summary>
public sealed class PyDict : Dictionary<object, object?>
{
    public PyDict(string typeName = "dict") => TypeName = typeName;
    public string TypeName { get; }
    public object? State { get; set; }
}

/// <summary>An instance of a plain Python class (e.g. argparse.Namespace in training checkpoints): its constructor arguments and BUILD state.</summary>
public sealed class PyObject(PyGlobal type, object?[] args)
{
    public PyGlobal Type { get; } = type;
    public object?[] Args { get; } = args;
    public object? State { get; set; }
}

/// <summary>
/// The subset of Python's unpickler that torch.save output needs (protocols 2–5). Values map to .NET as:
/// None → null, bool, int → long (or BigInteger beyond 64 bits), float → double, str → string, bytes → byte[],
/// tuple → object?[], list → List&lt;object?&gt;, dict/OrderedDict → <see cref="PyDict"/>. Globals are resolved only
/// through <paramref name="call"/>, which also decides which ones are allowed, so arbitrary code is never run.
/// </summary>
internal sealed class PickleReader(
    Stream stream,
    Func<object?, object?> persistentLoad,
    Func<PyGlobal, bool> isAllowed,
    Func<PyGlobal, object?[], object?> call)
{
    private readonly List<object?> _stack = new();
    private readonly Stack<int> _marks = new();
    private readonly Dictionary<long, object?> _memo = new();

    public object? Load()
    {
        _stack.Clear();
        _marks.Clear();
        _memo.Clear();
        while (true)
        {
            int op = stream.ReadByte();
            if (op < 0) throw new WeightsException("pickle ended before its STOP opcode (truncated file?)");
            switch (op)
            {
                case 0x80: ReadByte(); break;                        // PROTO
                case 0x95: ReadBytes(8); break;                      // FRAME (framing is only a read-ahead hint)
                case '.': return Pop();                              // STOP
                case '(': _marks.Push(_stack.Count); break;          // MARK
                case '}': Push(new PyDict()); break;                 // EMPTY_DICT
                case ']': Push(new List<object?>()); break;          // EMPTY_LIST
                case ')': Push(Array.Empty<object?>()); break;       // EMPTY_TUPLE
                case 'd': Push(DictFrom(PopMark())); break;          // DICT
                case 'l': Push(PopMark()); break;                    // LIST
                case 't': Push(PopMark().ToArray()); break;          // TUPLE
                case 0x85: Push(new[] { Pop() }); break;             // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; }
                case 'X': Push(Utf8(ReadU32())); break;              // BINUNICODE
                case 0x8c: Push(Utf8(ReadByte())); break;            // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(ReadI64())); break;             // BINUNICODE8
                case 'T': Push(Latin1(ReadI32())); break;            // BINSTRING (py2 str)
                case 'U': Push(Latin1(ReadByte())); break;           // SHORT_BINSTRING
                case 'B': Push(ReadBytes(ReadU32())); break;         // BINBYTES
                case 'C': Push(ReadBytes(ReadByte())); break;        // SHORT_BINBYTES
                case 0x8e: Push(ReadBytes(ReadI64())); break;        // BINBYTES8
                case 0x96: Push(ReadBytes(ReadI64())); break;        // BYTEARRAY8
                case 'J': Push((long)ReadI32()); break;              // BININT
                case 'K': Push((long)ReadByte()); break;             // BININT1
                case 'M': { var b = ReadBytes(2); Push((long)BinaryPrimitives.ReadUInt16LittleEndian(b)); break; }
                case 0x8a: Push(Long(ReadBytes(ReadByte()))); break; // LONG1
                case 0x8b: Push(Long(ReadBytes(ReadI32()))); break;  // LONG4
                case 'I': Push(IntLine(ReadLine())); break;          // INT (protocol 0)
                case 'L': Push(Long(ReadLine().TrimEnd('L'))); break; // LONG (protocol 0)
                case 'G': Push(BinaryPrimitives.ReadDoubleBigEndian(ReadBytes(8))); break; // BINFLOAT
                case 'F': Push(double.Parse(ReadLine(), System.Globalization.CultureInfo.InvariantCulture)); break;
                case 0x88: Push(true); break;                        // NEWTRUE
                case 0x89: Push(false); break;                       // NEWFALSE
                case 'N': Push(null); break;                         // NONE
                case 'c': Push(Global(ReadLine(), ReadLine())); break; // GLOBAL
                case 0x93: { var name = Pop() as string; var mod = Pop() as string; Push(Global(mod!, name!)); break; } // STACK_GLOBAL
                case 'R': { var args = Pop(); var f = Pop(); Push(Call(f, args)); break; }   // REDUCE
                case 0x81: { var args = Pop(); var cls = Pop(); Push(Call(cls, args)); break; } // NEWOBJ
                case 0x92: { Pop(); var args = Pop(); var cls = Pop(); Push(Call(cls, args)); break; } // NEWOBJ_EX (kwargs dropped)
                case 'b': Build(Pop()); break;                       // BUILD
                case 's': { var v = Pop(); var k = Pop(); AsDict(Top())[Key(k)] = v; break; } // SETITEM
                case 'u': { var items = PopMark(); var d = AsDict(Top()); for (int i = 0; i + 1 < items.Count; i += 2) d[Key(items[i])] = items[i + 1]; break; }
                case 'a': { var v = Pop(); AsList(Top()).Add(v); break; }        // APPEND
                case 'e': { var items = PopMark(); AsList(Top()).AddRange(items); break; } // APPENDS
                case 0x8f: Push(new HashSet<object?>()); break;      // EMPTY_SET
                case 0x90: { var items = PopMark(); if (Top() is HashSet<object?> hs) foreach (var i in items) hs.Add(i); break; } // ADDITEMS
                case 0x91: Push(new HashSet<object?>(PopMark())); break; // FROZENSET
                case 'p': _memo[long.Parse(ReadLine())] = Top(); break;  // PUT
                case 'q': _memo[ReadByte()] = Top(); break;          // BINPUT
                case 'r': _memo[ReadU32()] = Top(); break;           // LONG_BINPUT
                case 0x94: _memo[_memo.Count] = Top(); break;        // MEMOIZE
                case 'g': Push(Memo(long.Parse(ReadLine()))); break; // GET
                case 'h': Push(Memo(ReadByte())); break;             // BINGET
                case 'j': Push(Memo(ReadU32())); break;              // LONG_BINGET
                case 'Q': Push(persistentLoad(Pop())); break;        // BINPERSID
                case 'P': Push(persistentLoad(ReadLine())); break;   // PERSID
                case '0': Pop(); break;                              // POP
                case '1': PopMark(); break;                          // POP_MARK
                case '2': Push(Top()); break;                        // DUP
                default:
                    throw new WeightsException($"unsupported pickle opcode 0x{op:x2} at byte {SafePosition() - 1}");
            }
        }
    }

    private long SafePosition() { try { return stream.Position; } catch (NotSupportedException) { return -1; } }

    private PyGlobal Global(string module, string name)
    {
        var g = new PyGlobal(module, name);
        if (!isAllowed(g))
            throw new WeightsException($"the checkpoint refers to Python global '{g.FullName}', which Deid does not read (only tensors, containers, plain values and the torch/torchvision/port module classes of published checkpoints are)");
        return g;
    }

    private object? Call(object? callable, object? args)
    {
        if (callable is not PyGlobal g) throw new WeightsException("malformed pickle: REDUCE on something that is not a global");
        var a = args switch
        {
            object?[] t => t,
            null => Array.Empty<object?>(),
            _ => throw new WeightsException($"malformed pickle: arguments of {g.FullName} are not a tuple"),
        };
        return call(g, a);
    }

    private void Build(object? state)
    {
        switch (Top())
        {
            case PyDict d:
                // OrderedDict's BUILD carries instance attributes (state_dict's _metadata); a dict state of a plain dict would be its items.
                d.State = state;
                break;
            case PyObject o:
                o.State = state;
                break;
            default:
                break; // tensors' BUILD state (e.g. tensor attributes) carries nothing a state dict needs
        }
    }

    private static PyDict DictFrom(List<object?> items)
    {
        var d = new PyDict();
        for (int i = 0; i + 1 < items.Count; i += 2) d[Key(items[i])] = items[i + 1];
        return d;
    }

    private static object Key(object? k) => k ?? throw new WeightsException("Deid cannot read a pickle dict with a None key");

    private static PyDict AsDict(object? o) => o as PyDict ?? throw new WeightsException($"malformed pickle: SETITEM on {o?.GetType().Name ?? "None"}");
    private static List<object?> AsList(object? o) => o as List<object?> ?? throw new WeightsException($"malformed pickle: APPEND on {o?.GetType().Name ?? "None"}");

    private object? Memo(long i) => _memo.TryGetValue(i, out var v) ? v : throw new WeightsException($"malformed pickle: memo {i} is not set");

    private void Push(object? o) => _stack.Add(o);

    private object? Top() => _stack.Count > 0 ? _stack[^1] : throw new WeightsException("malformed pickle: stack underflow");

    private object? Pop()
    {
        if (_stack.Count == 0 || (_marks.Count > 0 && _marks.Peek() >= _stack.Count))
            throw new WeightsException("malformed pickle: stack underflow");
        var o = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return o;
    }

    private List<object?> PopMark()
    {
        if (_marks.Count == 0) throw new WeightsException("malformed pickle: no MARK");
        int m = _marks.Pop();
        var items = _stack.GetRange(m, _stack.Count - m);
        _stack.RemoveRange(m, _stack.Count - m);
        return items;
    }

    private int ReadByte()
    {
        int b = stream.ReadByte();
        return b >= 0 ? b : throw new WeightsException("pickle ended unexpectedly (truncated file?)");
    }

    private byte[] ReadBytes(long n)
    {
        if (n < 0 || n > int.MaxValue) throw new WeightsException($"malformed pickle: bad length {n}");
        var b = new byte[n];
        try { stream.ReadExactly(b); }
        catch (EndOfStreamException) { throw new WeightsException("pickle ended unexpectedly (truncated file?)"); }
        return b;
    }

    private int ReadI32() => BinaryPrimitives.ReadInt32LittleEndian(ReadBytes(4));
    private long ReadU32() => BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(4));
    private long ReadI64() => BinaryPrimitives.ReadInt64LittleEndian(ReadBytes(8));
    private string Utf8(long n) => Encoding.UTF8.GetString(ReadBytes(n));
    private string Latin1(long n) => Encoding.Latin1.GetString(ReadBytes(n));

    private string ReadLine()
    {
        var sb = new StringBuilder();
        for (int b = ReadByte(); b != '\n'; b = ReadByte()) sb.Append((char)b);
        return sb.ToString();
    }

    private static object IntLine(string s) => s switch
    {
        "00" => false,
        "01" => true,
        _ => long.Parse(s, System.Globalization.CultureInfo.InvariantCulture),
    };

    private static object Long(string s)
    {
        var v = BigInteger.Parse(s, System.Globalization.CultureInfo.InvariantCulture);
        return v >= long.MinValue && v <= long.MaxValue ? (long)v : v;
    }

    /// <summary>Two's-complement little-endian integer (LONG1/LONG4).</summary>
    private static object Long(byte[] bytes)
    {
        if (bytes.Length == 0) return 0L;
        var v = new BigInteger(bytes, isUnsigned: false, isBigEndian: false);
        return v >= long.MinValue && v <= long.MaxValue ? (long)v : v;
    }
}
