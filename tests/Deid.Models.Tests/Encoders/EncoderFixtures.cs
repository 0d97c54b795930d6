using System.Text.Json;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Deid.Models.Tests.Encoders;

/// <summary>Access to ../shared/golden/reference and the checks the encoder tests share.</summary>
internal static class EncoderFixtures
{
    public static string Reference(string file)
    {
        var path = TestPaths.Golden("reference", file);
        if (!File.Exists(path)) Assert.Skip($"reference fixture missing: {path} (part of the read-only ../shared data)");
        return path;
    }

    /// <summary>(name, shape, dtype) of every key in a *_keys.json, in state_dict order.</summary>
    public static List<(string Name, string Shape, string Dtype)> ExpectedKeys(string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Reference(file)));
        return doc.RootElement.GetProperty("keys").EnumerateArray()
            .Select(e => (e.GetProperty("name").GetString()!,
                          string.Join(",", e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64())),
                          e.GetProperty("dtype").GetString()!))
            .ToList();
    }

    public static List<(string Name, string Shape, string Dtype)> ActualKeys(nn.Module module) =>
        module.state_dict()
            .Select(kv => (kv.Key, string.Join(",", kv.Value.shape), DtypeName(kv.Value.dtype)))
            .ToList();

    private static string DtypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "F32",
        ScalarType.Int64 => "I64",
        ScalarType.Float16 => "F16",
        _ => t.ToString(),
    };

    /// <summary>
    /// README §2b: the k-th state_dict entry's element j is sin(0.7(j+1) + 1.3(k+1)) (float64), scaled by
    /// key suffix, rounded to float32; num_batches_tracked stays 0 but still counts for k.
    /// </summary>
    public static Dictionary<string, Tensor> FormulaWeights(nn.Module module)
    {
        var result = new Dictionary<string, Tensor>();
        int k = 0;
        foreach (var (name, t) in module.state_dict())
        {
            k++;
            if (name.EndsWith("num_batches_tracked", StringComparison.Ordinal)) continue;
            long n = t.numel();
            var shape = t.shape;
            double fanIn = shape.Skip(1).Aggregate(1.0, (a, b) => a * b);
            Func<double, double> scale =
                name.EndsWith("conv.weight", StringComparison.Ordinal) ? b => b * Math.Sqrt(2.0 / fanIn) :
                name.EndsWith("bn.weight", StringComparison.Ordinal) ? b => 1 + 0.5 * b :
                name.EndsWith("bn.bias", StringComparison.Ordinal) ? b => 0.1 * b :
                name.EndsWith("bn.running_mean", StringComparison.Ordinal) ? b => 0.2 * b :
                name.EndsWith("bn.running_var", StringComparison.Ordinal) ? b => 1.25 + 0.75 * b :
                throw new InvalidOperationException($"no formula for key '{name}'");
            var data = new float[n];
            for (long j = 0; j < n; j++)
                data[j] = (float)scale(Math.Sin(0.7 * (j + 1) + 1.3 * k));
            result[name] = torch.tensor(data, shape);
        }
        return result;
    }

    public static void AssertClose(Tensor expected, Tensor actual, double atol = 1e-4, double rtol = 1e-4, string what = "")
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = NewDisposeScope();
        var diff = (actual.to_type(ScalarType.Float64) - expected.to_type(ScalarType.Float64)).abs();
        var allowed = expected.to_type(ScalarType.Float64).abs() * rtol + atol;
        var excess = (diff - allowed).max().item<double>();
        var maxDiff = diff.max().item<double>();
        Assert.True(excess <= 0, $"{what}: max |diff| {maxDiff:g4} exceeds atol {atol:g2} + rtol {rtol:g2}·|expected|");
    }

    public static void DisposeAll(Dictionary<string, Tensor> tensors)
    {
        foreach (var t in tensors.Values) t.Dispose();
    }
}
