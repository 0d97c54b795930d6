using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Deid.Models.Weights;

/// <summary>
/// Reads a TensorFlow.js weights manifest (<c>*-weights_manifest.json</c> plus its binary shards).
/// Tensors come back in TF layout (conv kernels HWIO, depthwise kernels HWC1); use
/// <see cref="ConvToTorch"/> / <see cref="DepthwiseToTorch"/> to get PyTorch layouts.
/// </summary>
public static class TfjsManifest
{
    public static Dictionary<string, Tensor> Load(string dir, string manifestName)
    {
        var manifestPath = Path.Combine(dir, manifestName);
        if (!File.Exists(manifestPath))
            throw new FileNotFoundException($"TF.js weights manifest not found: {manifestPath}", manifestPath);
        ModelStore.CheckBeforeLoad(manifestPath);

        using var doc = JsonDocument.Parse(File.ReadAllText(manifestPath));
        if (doc.RootElement.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{manifestPath}: expected a JSON array of weight groups");

        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var group in doc.RootElement.EnumerateArray())
            {
                // Shards of one group are a single byte stream cut into files; tensors can straddle shard borders.
                using var stream = new MemoryStream();
                foreach (var p in group.GetProperty("paths").EnumerateArray())
                {
                    var shard = Path.Combine(dir, p.GetString()!);
                    if (!File.Exists(shard))
                        throw new FileNotFoundException($"TF.js weight shard not found: {shard} (listed in {manifestName})", shard);
                    ModelStore.CheckBeforeLoad(shard);
                    using var f = File.OpenRead(shard);
                    f.CopyTo(stream);
                }
                var bytes = stream.GetBuffer().AsSpan(0, (int)stream.Length);
                var offset = 0;
                foreach (var w in group.GetProperty("weights").EnumerateArray())
                {
                    var name = w.GetProperty("name").GetString()!;
                    var shape = w.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    var dtype = w.GetProperty("dtype").GetString()!;
                    var count = shape.Aggregate(1L, (a, b) => a * b);
                    var values = new float[count];
                    int used;
                    if (w.TryGetProperty("quantization", out var q))
                        used = Dequantize(bytes[offset..], values, q, name);
                    else
                        used = Decode(bytes[offset..], values, dtype, name);
                    offset += used;
                    result[name] = torch.tensor(values, shape, dtype: ScalarType.Float32);
                }
                if (offset != bytes.Length)
                    throw new InvalidDataException($"{manifestName}: weight group uses {offset} bytes but its shards hold {bytes.Length}");
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    private static int Decode(ReadOnlySpan<byte> src, float[] dst, string dtype, string name)
    {
        switch (dtype)
        {
            case "float32":
                Need(src, dst.Length * 4, name);
                for (var i = 0; i < dst.Length; i++) dst[i] = BitConverter.ToSingle(src.Slice(i * 4, 4));
                return dst.Length * 4;
            case "int32":
                Need(src, dst.Length * 4, name);
                for (var i = 0; i < dst.Length; i++) dst[i] = BitConverter.ToInt32(src.Slice(i * 4, 4));
                return dst.Length * 4;
            case "bool":
                Need(src, dst.Length, name);
                for (var i = 0; i < dst.Length; i++) dst[i] = src[i] != 0 ? 1f : 0f;
                return dst.Length;
            default:
                throw new NotSupportedException($"TF.js weight '{name}': dtype '{dtype}' is not supported");
        }
    }

    private static int Dequantize(ReadOnlySpan<byte> src, float[] dst, JsonElement q, string name)
    {
        var qtype = q.GetProperty("dtype").GetString();
        switch (qtype)
        {
            case "uint8":
            {
                var (scale, min) = (q.GetProperty("scale").GetDouble(), q.GetProperty("min").GetDouble());
                Need(src, dst.Length, name);
                for (var i = 0; i < dst.Length; i++) dst[i] = (float)(src[i] * scale + min);
                return dst.Length;
            }
            case "uint16":
            {
                var (scale, min) = (q.GetProperty("scale").GetDouble(), q.GetProperty("min").GetDouble());
                Need(src, dst.Length * 2, name);
                for (var i = 0; i < dst.Length; i++) dst[i] = (float)(BitConverter.ToUInt16(src.Slice(i * 2, 2)) * scale + min);
                return dst.Length * 2;
            }
            case "float16":
                Need(src, dst.Length * 2, name);
                for (var i = 0; i < dst.Length; i++) dst[i] = (float)BitConverter.ToHalf(src.Slice(i * 2, 2));
                return dst.Length * 2;
            default:
                throw new NotSupportedException($"TF.js weight '{name}': quantization dtype '{qtype}' is not supported");
        }
    }

    private static void Need(ReadOnlySpan<byte> src, int bytes, string name)
    {
        if (src.Length < bytes)
            throw new InvalidDataException($"TF.js weight '{name}' needs {bytes} bytes but the shard has only {src.Length} left (truncated .bin?)");
    }

    /// <summary>TF conv kernel [kh, kw, in, out] → torch [out, in, kh, kw].</summary>
    public static Tensor ConvToTorch(Tensor hwio) => hwio.permute(3, 2, 0, 1).contiguous();

    /// <summary>TF depthwise kernel [kh, kw, C, multiplier] → torch grouped conv weight [C*multiplier, 1, kh, kw].</summary>
    public static Tensor DepthwiseToTorch(Tensor hwcm)
    {
        var (kh, kw, c, m) = (hwcm.shape[0], hwcm.shape[1], hwcm.shape[2], hwcm.shape[3]);
        return hwcm.permute(2, 3, 0, 1).reshape(c * m, 1, kh, kw).contiguous();
    }
}
