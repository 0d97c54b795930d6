using Deid.Models.Weights;
using Deid.TestSupport;
using TorchSharp;
using Xunit;

namespace Deid.Models.Tests.Weights;

public class SafeTensorsTests
{
    // A property, not a static field: a missing fixture must skip the test, not fail the type initializer.
    private static string Fixture => TestPaths.Golden("reference", "stylegan2_small.safetensors");

    [Fact]
    public void ReadsHeaderMetadataAndTensors()
    {
        using var f = SafeTensors.Open(Fixture);
        Assert.Contains("state.style.1.weight", f.Keys);
        Assert.True(f.Metadata.ContainsKey("config"));
        var (dtype, shape) = f.Info("in.z");
        Assert.Equal("F32", dtype);
        Assert.Equal(new long[] { 3, 64 }, shape);
        using var z = f.Read("in.z");
        Assert.Equal(new long[] { 3, 64 }, z.shape);
        Assert.True(z.abs().max().item<float>() > 0.1f);
    }

    [Fact]
    public void SaveThenOpenIsBitIdentical()
    {
        using var dir = new TempDir();
        var path = dir.File("copy.safetensors");
        var all = SafeTensors.LoadAll(Fixture);
        using var half = torch.arange(0, 10, dtype: torch.float32).to_type(torch.float16);
        using var idx = torch.tensor(new long[] { 7 }).reshape(Array.Empty<long>());
        var toSave = all.Concat([new("extra.half", half), new KeyValuePair<string, torch.Tensor>("extra.scalar", idx)]).ToList();
        SafeTensors.Save(path, toSave, new Dictionary<string, string> { ["note"] = "roundtrip" });
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
        using var back = SafeTensors.Open(path);
        Assert.Equal("roundtrip", back.Metadata["note"]);
        Assert.Equal(toSave.Select(p => p.Key), back.Keys);
        foreach (var (name, t) in toSave)
        {
            using var r = back.Read(name);
            Assert.Equal(t.dtype, r.dtype);
            Assert.Equal(t.shape, r.shape);
            Assert.True(t.bytes.SequenceEqual(r.bytes), name);
        }
        foreach (var t in all.Values) t.Dispose();
    }

    [Fact]
    public void StrictLoadNamesEveryProblem()
    {
        using var lin = torch.nn.Linear(4, 3);
        var bad = new Dictionary<string, torch.Tensor> { ["weight"] = torch.zeros(3, 5), ["extra"] = torch.zeros(1) };
        var e = Assert.Throws<WeightsException>(() => StateDict.LoadStrict(lin, bad));
        Assert.Contains("missing 'bias'", e.Message);
        Assert.Contains("'weight' has shape [3,5]", e.Message);
        Assert.Contains("unexpected 'extra'", e.Message);
    }

    [Fact]
    public void NotASafetensorsFileIsAClearError()
    {
        using var dir = new TempDir();
        var p = dir.File("x.safetensors");
        File.WriteAllText(p, "hello, this is not a weight file at all");
        var e = Assert.Throws<WeightsException>(() => SafeTensors.Open(p));
        Assert.Contains("not a safetensors file", e.Message);
        Assert.Contains("not found", Assert.Throws<WeightsException>(() => SafeTensors.Open(dir.File("missing.safetensors"))).Message);
    }
}
