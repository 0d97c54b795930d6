using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Models.Weights;

/// <summary>Error in a weight file or in matching it to a network; the message names the file or tensor.</summary>
public sealed class WeightsException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// A safetensors file (Deid's canonical weight format), memory-mapped: the header is parsed once and each
/// tensor is copied straight from the mapping into its own tensor, so a 100 MB checkpoint is never held twice.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly long _dataStart;
    private readonly Dictionary<string, (string Dtype, long[] Shape, long Begin, long End)> _entries = new();
    private readonly List<string> _keys = new();

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyList<string> Keys => _keys;

    private SafeTensorsFile(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new WeightsException($"weights file not found: {path}");
        // The opened file's length: FileInfo.Length of a symbolic link is the link's own (a linked G in a checkpoint).
        long fileLength;
        using (var fs = File.OpenRead(path)) fileLength = fs.Length;
        if (fileLength < 8) throw new WeightsException($"{path} is not a safetensors file (only {fileLength} bytes)");
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        ulong headerLen = _view.ReadUInt64(0);
        if (headerLen == 0 || headerLen > (ulong)fileLength - 8 || headerLen > 100_000_000)
            throw new WeightsException($"{path} is not a safetensors file (bad header length {headerLen})");
        var header = new byte[headerLen];
        _view.ReadArray(8, header, 0, header.Length);
        _dataStart = 8 + (long)headerLen;
        var meta = new Dictionary<string, string>();
        try
        {
            using var doc = JsonDocument.Parse(header);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__")
                {
                    foreach (var m in p.Value.EnumerateObject()) meta[m.Name] = m.Value.GetString() ?? "";
                    continue;
                }
                var dtype = p.Value.GetProperty("dtype").GetString()!;
                var shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                long expected = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype, p.Name);
                if (offs.Length != 2 || offs[1] - offs[0] != expected || _dataStart + offs[1] > fileLength)
                    throw new WeightsException($"{path}: tensor '{p.Name}' has inconsistent offsets/shape");
                _entries[p.Name] = (dtype, shape, offs[0], offs[1]);
                _keys.Add(p.Name);
            }
        }
        catch (JsonException e)
        {
            throw new WeightsException($"{path} is not a safetensors file (header is not JSON: {e.Message})", e);
        }
        catch (KeyNotFoundException e)
        {
            throw new WeightsException($"{path}: malformed safetensors header ({e.Message})", e);
        }
        Metadata = meta;
    }

    public static SafeTensorsFile Open(string path)
    {
        ModelStore.CheckBeforeLoad(path);
        try { return new SafeTensorsFile(path); }
        catch (IOException e) { throw new WeightsException($"cannot read {path}: {e.Message}", e); }
        catch (UnauthorizedAccessException e) { throw new WeightsException($"cannot read {path}: {e.Message}", e); }
    }

    public bool Contains(string name) => _entries.ContainsKey(name);

    public (string Dtype, long[] Shape) Info(string name) =>
        _entries.TryGetValue(name, out var e) ? (e.Dtype, e.Shape) : throw new WeightsException($"{Path}: no tensor named '{name}'");

    /// <summary>A new CPU tensor with the stored values, optionally converted to <paramref name="as"/>.</summary>
    public unsafe Tensor Read(string name, ScalarType? @as = null)
    {
        if (!_entries.TryGetValue(name, out var e)) throw new WeightsException($"{Path}: no tensor named '{name}'");
        var t = empty(e.Shape, ToScalarType(e.Dtype, name));
        var dst = t.bytes;
        long n = e.End - e.Begin;
        if (n > 0)
        {
            byte* src = null;
            _view!.SafeMemoryMappedViewHandle.AcquirePointer(ref src);
            try
            {
                src += _view.PointerOffset + _dataStart + e.Begin;
                new ReadOnlySpan<byte>(src, checked((int)n)).CopyTo(dst);
            }
            finally { _view.SafeMemoryMappedViewHandle.ReleasePointer(); }
        }
        if (@as is { } st && st != t.dtype)
        {
            var c = t.to_type(st);
            t.Dispose();
            return c;
        }
        return t;
    }

    public void Dispose()
    {
        _view?.Dispose();
        _map?.Dispose();
    }

    internal static ScalarType ToScalarType(string dtype, string name) => dtype switch
    {
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "F64" => ScalarType.Float64,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "I16" => ScalarType.Int16,
        "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte,
        "BOOL" => ScalarType.Bool,
        _ => throw new WeightsException($"tensor '{name}' has unsupported dtype {dtype}"),
    };

    internal static string ToDtype(ScalarType t) => t switch
    {
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8",
        ScalarType.Bool => "BOOL",
        _ => throw new WeightsException($"dtype {t} cannot be stored in safetensors"),
    };

    private static long ElementSize(string dtype, string name) => dtype switch
    {
        "F64" or "I64" => 8,
        "F32" or "I32" => 4,
        "F16" or "BF16" or "I16" => 2,
        "I8" or "U8" or "BOOL" => 1,
        _ => throw new WeightsException($"tensor '{name}' has unsupported dtype {dtype}"),
    };
}

public static class SafeTensors
{
    public static SafeTensorsFile Open(string path) => SafeTensorsFile.Open(path);

    /// <summary>Reads every tensor of a file (CPU) into a dictionary, in header order.</summary>
    public static Dictionary<string, Tensor> LoadAll(string path, string prefix = "")
    {
        using var f = SafeTensorsFile.Open(path);
        var d = new Dictionary<string, Tensor>();
        foreach (var k in f.Keys)
            if (k.StartsWith(prefix, StringComparison.Ordinal))
                d[k[prefix.Length..]] = f.Read(k);
        return d;
    }

    /// <summary>
    /// Writes tensors (in the given order) and string metadata; the file appears only when complete
    /// (temp file + rename), so an interrupted save never leaves a truncated checkpoint behind.
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var (name, t) in list)
        {
            long bytes = t.numel() * t.ElementSize;
            header[name] = new { dtype = SafeTensorsFile.ToDtype(t.dtype), shape = t.shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8;
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write))
            {
                Span<byte> len = stackalloc byte[8];
                BitConverter.TryWriteBytes(len, (ulong)(json.Length + pad));
                fs.Write(len);
                fs.Write(json);
                for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
                foreach (var (_, t) in list)
                {
                    using var c = t.detach().cpu().contiguous();
                    fs.Write(c.bytes);
                }
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public static string Sha256(string path)
    {
        using var fs = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(fs));
    }
}
