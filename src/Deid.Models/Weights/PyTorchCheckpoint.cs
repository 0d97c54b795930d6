using System.IO.Compression;
using System.Numerics;
using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Models.Weights;

/// <summary>
/// Reads files written by <c>torch.save</c> without Python: the zip format (PyTorch ≥ 1.6: <c>&lt;root&gt;/data.pkl</c>
/// plus one entry per storage) and the legacy format (a sequence of pickles followed by the raw storages).
/// Only what checkpoints of weights contain is understood: containers, plain values, tensors and, for whole pickled
/// modules (<c>torch.save(model)</c>), an allow-list of module classes that are rebuilt as inert
/// <see cref="PyObject"/>s (class name + attribute dict, read through <see cref="PickledModule"/>). Any other Python
/// global is rejected by name, so loading never executes code.
/// </summary>
public static class PyTorchCheckpoint
{
    private static readonly BigInteger LegacyMagic = BigInteger.Parse("119547037146038801333356");  // 0x1950a86a20f9469cfc6c
    private const long LegacyProtocol = 1001;

    private static readonly Dictionary<string, ScalarType> StorageTypes = new()
    {
        ["FloatStorage"] = ScalarType.Float32,
        ["HalfStorage"] = ScalarType.Float16,
        ["BFloat16Storage"] = ScalarType.BFloat16,
        ["DoubleStorage"] = ScalarType.Float64,
        ["LongStorage"] = ScalarType.Int64,
        ["IntStorage"] = ScalarType.Int32,
        ["ShortStorage"] = ScalarType.Int16,
        ["CharStorage"] = ScalarType.Int8,
        ["ByteStorage"] = ScalarType.Byte,
        ["BoolStorage"] = ScalarType.Bool,
    };

    /// <summary>
    /// The unpickled object graph (<see cref="PyDict"/>, lists, tuples as object?[], primitives), with every tensor
    /// as a CPU <see cref="Tensor"/> owned by the caller (see <see cref="DisposeTensors"/>).
    /// </summary>
    public static object? Load(string path)
    {
        if (!File.Exists(path)) throw new WeightsException($"checkpoint not found: {path}");
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            Span<byte> head = stackalloc byte[4];
            int n = fs.ReadAtLeast(head, 4, throwOnEndOfStream: false);
            fs.Position = 0;
            if (n == 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
                return LoadZip(fs, path);
            if (fs.Length > 262)
            {
                var tar = new byte[5];
                fs.Position = 257;
                fs.ReadExactly(tar);
                fs.Position = 0;
                if (System.Text.Encoding.ASCII.GetString(tar) == "ustar")
                    throw new WeightsException($"{path} is a tar-format checkpoint (PyTorch < 0.4), which Deid does not read; re-save it with a newer torch");
            }
            return LoadLegacy(fs, path);
        }
        catch (IOException e) { throw new WeightsException($"cannot read {path}: {e.Message}", e); }
        catch (InvalidDataException e) { throw new WeightsException($"{path} is not a valid PyTorch checkpoint: {e.Message}", e); }
        catch (WeightsException e) when (!e.Message.Contains(path, StringComparison.Ordinal))
        {
            throw new WeightsException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>
    /// The tensors of a state dict inside a checkpoint: the root itself, or <c>root[key]</c>, or (when key is null
    /// and the root holds one) the usual wrappers <c>state_dict</c>/<c>model</c>. Non-tensor entries are skipped.
    /// </summary>
    public static Dictionary<string, Tensor> StateDict(object? root, string? key = null)
    {
        if (root is PyObject { Type: var cls } && IsModuleClass(cls))
            throw new WeightsException($"the checkpoint holds a whole pickled module ({cls.FullName}), not a state dict (the port's published E_attr and M import with --as port-attr-encoder / port-mapper)");
        if (root is not PyDict d) throw new WeightsException($"the checkpoint holds a {Describe(root)}, not a dict");
        PyDict sd = d;
        if (key is not null)
        {
            sd = d.TryGetValue(key, out var v) && v is PyDict inner
                ? inner
                : throw new WeightsException($"the checkpoint has no dict '{key}' (top-level keys: {string.Join(", ", d.Keys.Take(20))})");
        }
        else if (!d.Values.Any(v => v is Tensor))
        {
            foreach (var k in new[] { "state_dict", "model", "g_ema" })
                if (d.TryGetValue(k, out var v) && v is PyDict inner) { sd = inner; break; }
        }
        var result = new Dictionary<string, Tensor>();
        foreach (var (k, v) in sd)
            if (k is string name && v is Tensor t) result[name] = t;
        return result;
    }

    /// <summary>Disposes every tensor reachable from <paramref name="root"/>.</summary>
    public static void DisposeTensors(object? root) => Walk(root, o => { if (o is Tensor t) t.Dispose(); return o; });

    // ---- zip format ----

    private static object? LoadZip(FileStream fs, string path)
    {
        using var zip = new ZipArchive(fs, ZipArchiveMode.Read, leaveOpen: true);
        var pkl = zip.Entries
            .Where(e => e.FullName == "data.pkl" || e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal))
            .OrderBy(e => e.FullName.Length)
            .FirstOrDefault()
            ?? throw new WeightsException($"{path} is a zip file without data.pkl (not a torch.save checkpoint)");
        string root = pkl.FullName[..^"data.pkl".Length];
        var order = zip.GetEntry(root + "byteorder");
        if (order is not null)
        {
            using var r = new StreamReader(order.Open());
            if (r.ReadToEnd().Trim() != "little") throw new WeightsException($"{path} was written on a big-endian machine, which Deid does not read");
        }

        var storages = new Dictionary<string, StorageRef>();
        object? graph;
        using (var ps = new MemoryStream())
        {
            using (var s = pkl.Open()) s.CopyTo(ps);
            ps.Position = 0;
            graph = Unpickle(ps, pid => ZipPersistentLoad(pid, storages));
        }

        var data = new Dictionary<string, Tensor>();
        try
        {
            foreach (var (key, sref) in storages)
            {
                var entry = zip.GetEntry(root + "data/" + key)
                            ?? throw new WeightsException($"{path} lacks storage data/{key}");
                long bytes = sref.Numel * ElementSize(sref.Dtype);
                if (entry.Length < bytes)
                    throw new WeightsException($"{path}: storage data/{key} has {entry.Length} bytes, {bytes} expected (truncated?)");
                var t = empty([sref.Numel], sref.Dtype);
                data[key] = t;
                if (bytes > 0)
                {
                    using var s = entry.Open();
                    ReadInto(s, t, bytes, path);
                }
            }
            return Materialize(graph, data);
        }
        finally
        {
            foreach (var t in data.Values) t.Dispose();
        }
    }

    private static StorageRef ZipPersistentLoad(object? pid, Dictionary<string, StorageRef> storages)
    {
        // ('storage', <torch.XStorage>, key, location, numel)
        if (pid is not object?[] { Length: >= 5 } t || t[0] as string != "storage")
            throw new WeightsException($"unsupported persistent id {Describe(pid)} (only tensor storages are supported)");
        var key = Convert.ToString(t[2], System.Globalization.CultureInfo.InvariantCulture)!;
        var sref = new StorageRef(key, DtypeOf(t[1]), Convert.ToInt64(t[4]), 0, -1);
        if (!storages.TryGetValue(key, out var prev)) storages[key] = sref;
        else if (prev.Dtype != sref.Dtype) throw new WeightsException($"storage {key} is used with two dtypes");
        return sref;
    }

    // ---- legacy format ----

    private static object? LoadLegacy(FileStream fs, string path)
    {
        object? magic;
        try { magic = Unpickle(fs, _ => throw new WeightsException("unexpected persistent id")); }
        catch (WeightsException e)
        {
            throw new WeightsException($"{path} is not a PyTorch checkpoint (neither a zip archive nor the legacy pickle format)", e);
        }
        if (!(magic is BigInteger m && m == LegacyMagic))
            throw new WeightsException($"{path} is not a PyTorch checkpoint (bad magic number)");
        var protocol = Unpickle(fs, _ => null);
        if (protocol is not long p || p != LegacyProtocol)
            throw new WeightsException($"{path}: unsupported legacy checkpoint protocol {Describe(protocol)}");
        if (Unpickle(fs, _ => null) is PyDict sys && sys.TryGetValue("little_endian", out var le) && le is false)
            throw new WeightsException($"{path} was written on a big-endian machine, which Deid does not read");

        var roots = new Dictionary<string, StorageRef>();
        var graph = Unpickle(fs, pid => LegacyPersistentLoad(pid, roots));
        if (Unpickle(fs, _ => null) is not List<object?> keys)
            throw new WeightsException($"{path}: legacy checkpoint lacks its storage key list");

        var data = new Dictionary<string, Tensor>();
        try
        {
            Span<byte> countBytes = stackalloc byte[8];
            foreach (var k in keys)
            {
                var key = Convert.ToString(k, System.Globalization.CultureInfo.InvariantCulture)!;
                if (!roots.TryGetValue(key, out var sref))
                    throw new WeightsException($"{path}: storage {key} is stored but never used, so its type is unknown");
                try { fs.ReadExactly(countBytes); }
                catch (EndOfStreamException) { throw new WeightsException($"{path} is truncated (storage {key} missing)"); }
                long numel = BitConverter.ToInt64(countBytes);
                if (numel < sref.Numel)
                    throw new WeightsException($"{path}: storage {key} holds {numel} elements, {sref.Numel} expected");
                var t = empty([numel], sref.Dtype);
                data[key] = t;
                ReadInto(fs, t, numel * ElementSize(sref.Dtype), path);
            }
            return Materialize(graph, data);
        }
        finally
        {
            foreach (var t in data.Values) t.Dispose();
        }
    }

    private static object LegacyPersistentLoad(object? pid, Dictionary<string, StorageRef> roots)
    {
        // A whole module saved in the legacy format names each module class as ('module', <class>, source file, source);
        // the class already passed the allow-list as a GLOBAL, and its recorded source is ignored.
        if (pid is object?[] { Length: >= 2 } m && m[0] as string == "module" && m[1] is PyGlobal cls) return cls;
        // ('storage', <torch.XStorage>, root_key, location, numel, view_metadata)
        if (pid is not object?[] { Length: >= 6 } t || t[0] as string != "storage")
            throw new WeightsException($"unsupported persistent id {Describe(pid)} (only tensor storages and module classes are supported)");
        var dtype = DtypeOf(t[1]);
        var key = Convert.ToString(t[2], System.Globalization.CultureInfo.InvariantCulture)!;
        long numel = Convert.ToInt64(t[4]);
        if (!roots.ContainsKey(key)) roots[key] = new StorageRef(key, dtype, numel, 0, -1);
        if (t[5] is object?[] { Length: 3 } view)   // (view_key, offset, view_size): a storage slice
            return new StorageRef(key, dtype, numel, Convert.ToInt64(view[1]), Convert.ToInt64(view[2]));
        return roots[key];
    }

    // ---- shared ----

    private sealed record StorageRef(string Key, ScalarType Dtype, long Numel, long ViewOffset, long ViewSize);

    private sealed record PendingTensor(StorageRef Storage, long Offset, long[] Size, long[] Stride);

    private static object? Unpickle(Stream s, Func<object?, object?> persistentLoad) =>
        new PickleReader(s, persistentLoad, IsAllowed, Call).Load();

    /// <summary>
    /// The port's own classes (danielroich/ID-disentanglement-Pytorch) that wrap its published E_attr and M. Only these
    /// two: the test fixtures build modules under the same paths, so the list is checked against real pickles.
    /// </summary>
    private static readonly HashSet<string> PortModuleClasses =
    [
        "Models.Encoders.Inception.Inception",
        "Models.LatentMapper.LatentMapper",
    ];

    /// <summary>
    /// Plain (non-module) objects kept as attributes of those modules: the port's Inception wrapper holds its
    /// Resize/CenterCrop pipeline in a <c>transforms.Compose</c> attribute, whose Resize names an InterpolationMode.
    /// </summary>
    private static readonly HashSet<string> AttributeClasses =
    [
        "torchvision.transforms.transforms.Compose",
        "torchvision.transforms.transforms.Resize",
        "torchvision.transforms.transforms.CenterCrop",
        "torchvision.transforms.functional.InterpolationMode",
    ];

    /// <summary>Enums, whose members Python ≥ 3.11 pickles as <c>getattr(EnumClass, 'NAME')</c>.</summary>
    private static readonly HashSet<string> EnumClasses = ["torchvision.transforms.functional.InterpolationMode"];

    /// <summary>
    /// Classes a whole pickled module may be built from: torch's own layers and containers, torchvision's Inception
    /// blocks, the port's wrappers and the attribute objects above. All of them become inert <see cref="PyObject"/>s.
    /// </summary>
    internal static bool IsModuleClass(PyGlobal g) =>
        g.Module.StartsWith("torch.nn.modules.", StringComparison.Ordinal)
        || g.Module == "torchvision.models.inception"
        || PortModuleClasses.Contains(g.FullName)
        || AttributeClasses.Contains(g.FullName);

    /// <summary>Protocol-2 pickles written by Python 3 name builtins by their Python 2 module (<c>__builtin__.set</c>).</summary>
    private static string Canonical(PyGlobal g) => g.Module == "__builtin__" ? "builtins." + g.Name : g.FullName;

    private static bool IsAllowed(PyGlobal g) => Canonical(g) switch
    {
        "collections.OrderedDict" or "builtins.dict" => true,
        "torch._utils._rebuild_tensor_v2" or "torch._utils._rebuild_tensor" => true,
        "torch._utils._rebuild_parameter" or "torch._utils._rebuild_parameter_with_state" => true,
        "torch.device" or "_codecs.encode" or "argparse.Namespace" => true,
        "builtins.set" or "builtins.frozenset" or "builtins.list" or "builtins.tuple" => true,
        "builtins.getattr" => true,   // only ever applied to an allowed enum class, see Call
        _ => g.Module == "torch" && StorageTypes.ContainsKey(g.Name) || IsModuleClass(g),
    };

    private static object? Call(PyGlobal g, object?[] a)
    {
        if (IsModuleClass(g)) return new PyObject(g, a);   // NEWOBJ/REDUCE of an allowed class: its BUILD state follows
        switch (Canonical(g))
        {
            case "collections.OrderedDict":
            case "builtins.dict":
            {
                var d = new PyDict(g.FullName == "collections.OrderedDict" ? "collections.OrderedDict" : "dict");
                if (a.Length > 0 && a[0] is System.Collections.IEnumerable items and not string)
                    foreach (var item in items)
                        if (item is object?[] { Length: 2 } kv && kv[0] is { } k) d[k] = kv[1];
                return d;
            }
            case "torch._utils._rebuild_tensor_v2":
            case "torch._utils._rebuild_tensor":
            {
                if (a.Length < 4 || a[0] is not StorageRef s)
                    throw new WeightsException($"malformed tensor in checkpoint ({g.FullName} with {a.Length} arguments)");
                return new PendingTensor(s, Convert.ToInt64(a[1]), Longs(a[2]), Longs(a[3]));
            }
            case "torch._utils._rebuild_parameter":
            case "torch._utils._rebuild_parameter_with_state":
                return a.Length > 0 ? a[0] : throw new WeightsException("malformed parameter in checkpoint");
            case "torch.device":
                return string.Join(":", a.Select(x => Convert.ToString(x, System.Globalization.CultureInfo.InvariantCulture)));
            case "_codecs.encode":
                return a.Length > 0 && a[0] is string str ? System.Text.Encoding.Latin1.GetBytes(str) : Array.Empty<byte>();
            case "builtins.set":
            case "builtins.frozenset":
                return new HashSet<object?>(a.Length > 0 && a[0] is System.Collections.IEnumerable e ? e.Cast<object?>() : []);
            case "builtins.list":
                return a.Length > 0 && a[0] is System.Collections.IEnumerable l ? l.Cast<object?>().ToList() : new List<object?>();
            case "builtins.tuple":
                return a.Length > 0 && a[0] is System.Collections.IEnumerable tu ? tu.Cast<object?>().ToArray() : Array.Empty<object?>();
            case "argparse.Namespace":
                return new PyObject(g, a);
            case "builtins.getattr":
                // An enum member: kept as the class with the member's name, never looked up in Python.
                if (a is [PyGlobal cls, string member] && EnumClasses.Contains(cls.FullName)) return new PyObject(cls, [member]);
                throw new WeightsException($"the checkpoint calls Python getattr({string.Join(", ", a.Select(Describe))}), which Deid does not support");
            default:
                throw new WeightsException($"the checkpoint calls Python '{g.FullName}', which Deid does not support");
        }
    }

    private static long[] Longs(object? o) => o switch
    {
        object?[] t => t.Select(Convert.ToInt64).ToArray(),
        List<object?> l => l.Select(Convert.ToInt64).ToArray(),
        _ => throw new WeightsException($"malformed tensor shape {Describe(o)}"),
    };

    private static ScalarType DtypeOf(object? storageType) =>
        storageType is PyGlobal { Module: "torch" } g && StorageTypes.TryGetValue(g.Name, out var st)
            ? st
            : throw new WeightsException($"unsupported storage type {Describe(storageType)}");

    private static long ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    private static void ReadInto(Stream s, Tensor t, long bytes, string path)
    {
        var span = t.bytes;
        if (span.Length != bytes) throw new WeightsException($"{path}: storage size mismatch");
        try { s.ReadExactly(span); }
        catch (EndOfStreamException) { throw new WeightsException($"{path} is truncated (storage data ends early)"); }
    }

    /// <summary>Replaces every pending tensor in the graph by a tensor that owns exactly its elements.</summary>
    private static object? Materialize(object? graph, Dictionary<string, Tensor> storages) => Walk(graph, o =>
    {
        if (o is not PendingTensor p) return o;
        var root = storages[p.Storage.Key];
        long baseOffset = p.Storage.ViewSize >= 0 ? p.Storage.ViewOffset : 0;
        long avail = p.Storage.ViewSize >= 0 ? p.Storage.ViewSize : root.shape[0];
        long numel = p.Size.Aggregate(1L, (x, y) => x * y);
        if (numel > 0)
        {
            long last = p.Offset + p.Size.Zip(p.Stride, (n, st) => (n - 1) * st).Sum();
            if (p.Offset < 0 || last >= avail)
                throw new WeightsException($"tensor of shape [{string.Join(",", p.Size)}] reaches past its storage {p.Storage.Key}");
        }
        using var view = root.as_strided(p.Size, p.Stride, baseOffset + p.Offset);
        // A fresh contiguous copy: views would keep a whole shared storage alive and keep odd strides.
        using var dense = view.contiguous();
        return dense.clone();
    });

    private static object? Walk(object? o, Func<object?, object?> f) => Walk(o, f, new HashSet<object>(ReferenceEqualityComparer.Instance));

    private static object? Walk(object? o, Func<object?, object?> f, HashSet<object> seen)
    {
        if (o is null || o is string || o.GetType().IsPrimitive) return f(o);
        if (!seen.Add(o)) return o is PendingTensor ? f(o) : o;
        switch (o)
        {
            case PyDict d:
                foreach (var k in d.Keys.ToList()) d[k] = Walk(d[k], f, seen);
                d.State = Walk(d.State, f, seen);
                return d;
            case List<object?> l:
                for (int i = 0; i < l.Count; i++) l[i] = Walk(l[i], f, seen);
                return l;
            case object?[] t:
                for (int i = 0; i < t.Length; i++) t[i] = Walk(t[i], f, seen);
                return t;
            case PyObject po:
                for (int i = 0; i < po.Args.Length; i++) po.Args[i] = Walk(po.Args[i], f, seen);
                po.State = Walk(po.State, f, seen);
                return po;
            default:
                return f(o);
        }
    }

    internal static string Describe(object? o) => o switch
    {
        null => "None",
        PyGlobal g => g.FullName,
        PyObject po => po.Type.FullName + " object",
        string s => $"'{s}'",
        object?[] t => "(" + string.Join(", ", t.Select(Describe)) + ")",
        _ => o.GetType().Name,
    };
}
