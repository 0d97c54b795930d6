using System.Numerics;
using Deid.Models.Weights;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Deid.Models.Tests.Weights;

public sealed class PyTorchCheckpointTests
{
    private static string Reference(string name) => TestPaths.Golden("reference", name);
    private static string Fixture(string name) => Path.Combine(TestPaths.RepoRoot, "tests", "Deid.Models.Tests", "Fixtures", name);

    private static void AssertBitEqual(Tensor expected, Tensor actual, string name)
    {
        Assert.True(expected.dtype == actual.dtype, $"{name}: dtype {actual.dtype}, expected {expected.dtype}");
        Assert.Equal(expected.shape, actual.shape);
        // Named, so that neither copy can be freed while its bytes are read (a Span keeps no tensor alive).
        using var e = expected.contiguous();
        using var a = actual.contiguous();
        Assert.True(e.bytes.SequenceEqual(a.bytes), $"{name}: bytes differ");
    }

    [Theory]
    [InlineData("stylegan2_small_gema.pt")]
    [InlineData("stylegan2_small_gema_legacy.pt")]
    public void ReadsRosinalityCheckpointBitForBit(string file)
    {
        var root = PyTorchCheckpoint.Load(Reference(file));
        var reference = StateDict.FromSafeTensors(Reference("stylegan2_small.safetensors"));
        try
        {
            var top = Assert.IsType<PyDict>(root);
            Assert.Equal(new object[] { "g_ema", "latent_avg" }, top.Keys.ToArray());
            var gEma = Assert.IsType<PyDict>(top["g_ema"]);
            Assert.Equal("collections.OrderedDict", gEma.TypeName);
            Assert.IsType<PyDict>(Assert.IsType<PyDict>(gEma.State)["_metadata"]);

            var sd = PyTorchCheckpoint.StateDict(root, "g_ema");
            var expectedKeys = reference.Keys.Where(k => k.StartsWith("state.")).Select(k => k["state.".Length..]).ToList();
            Assert.Equal(expectedKeys, sd.Keys.ToList());
            foreach (var k in expectedKeys) AssertBitEqual(reference["state." + k], sd[k], k);

            var avg = Assert.IsType<Tensor>(top["latent_avg"]);
            AssertBitEqual(reference["out.latent_avg"][0], avg, "latent_avg");
        }
        finally
        {
            PyTorchCheckpoint.DisposeTensors(root);
            foreach (var t in reference.Values) t.Dispose();
        }
    }

    [Theory]
    [InlineData("pt_mixed.pt")]
    [InlineData("pt_mixed_legacy.pt")]
    public void ReadsViewsDtypesAndPlainValues(string file)
    {
        var root = PyTorchCheckpoint.Load(Fixture(file));
        try
        {
            var d = Assert.IsType<PyDict>(root);
            using var scope = NewDisposeScope();
            var b = arange(24, dtype: float32);
            AssertBitEqual(b[..12].reshape(3, 4).t().contiguous(), (Tensor)d["transposed"]!, "transposed");
            AssertBitEqual(b.reshape(4, 6)[1..3, TensorIndex.Slice(null, null, 2)].contiguous(), (Tensor)d["sliced"]!, "sliced");
            AssertBitEqual((arange(6, dtype: float32) / 4).to(float16).reshape(2, 3), (Tensor)d["half"]!, "half");
            AssertBitEqual((arange(4, dtype: float32) - 1.5).to(bfloat16), (Tensor)d["bf16"]!, "bf16");
            AssertBitEqual(arange(3, dtype: float64) * 0.1, (Tensor)d["double"]!, "double");
            AssertBitEqual(tensor(new long[] { -(1L << 40), 0, 7 }), (Tensor)d["long"]!, "long");
            AssertBitEqual(tensor(new[] { -3, 5 }), (Tensor)d["int"]!, "int");
            AssertBitEqual(tensor(new[] { true, false, true }), (Tensor)d["bool"]!, "bool");
            AssertBitEqual(tensor(new byte[] { 0, 255, 17 }), (Tensor)d["byte"]!, "byte");
            var scalar = (Tensor)d["scalar"]!;
            Assert.Empty(scalar.shape);
            Assert.Equal(2.5f, scalar.item<float>());
            AssertBitEqual(ones(2, 2), (Tensor)d["param"]!, "param");

            var nested = Assert.IsType<PyDict>(d["nested"]);
            Assert.Equal(new object?[] { 1L, 2.5, "x", null, true }, Assert.IsType<List<object?>>(nested["list"]));
            Assert.Equal(new object?[] { 3L, -4L }, Assert.IsType<object?[]>(nested["tuple"]));
            Assert.Equal(BigInteger.Pow(2, 70), nested["big"]);
            Assert.Equal(-300L, nested["neg"]);

            var sd = PyTorchCheckpoint.StateDict(root);
            Assert.Equal(11, sd.Count); // the tensors; "nested" is skipped
        }
        finally
        {
            PyTorchCheckpoint.DisposeTensors(root);
        }
    }

    [Fact]
    public void RefusesToRunArbitraryGlobals()
    {
        var ex = Assert.Throws<WeightsException>(() => PyTorchCheckpoint.Load(Fixture("pt_evil.pt")));
        Assert.Contains("posix.system", ex.Message);
    }

    [Fact]
    public void ClearErrorsForMissingTruncatedAndForeignFiles()
    {
        using var tmp = new TempDir();
        var missing = Assert.Throws<WeightsException>(() => PyTorchCheckpoint.Load(tmp.File("nope.pt")));
        Assert.Contains("not found", missing.Message);

        File.WriteAllText(tmp.File("text.pt"), "hello, this is not a checkpoint");
        var foreign = Assert.Throws<WeightsException>(() => PyTorchCheckpoint.Load(tmp.File("text.pt")));
        Assert.Contains("not a PyTorch checkpoint", foreign.Message);

        var legacy = File.ReadAllBytes(Reference("stylegan2_small_gema_legacy.pt"));
        File.WriteAllBytes(tmp.File("cut.pt"), legacy[..(legacy.Length - 1000)]);
        var cut = Assert.Throws<WeightsException>(() => PyTorchCheckpoint.Load(tmp.File("cut.pt")));
        Assert.Contains("truncated", cut.Message);

        var root = PyTorchCheckpoint.Load(Reference("stylegan2_small_gema.pt"));
        try
        {
            var noKey = Assert.Throws<WeightsException>(() => PyTorchCheckpoint.StateDict(root, "g"));
            Assert.Contains("g_ema", noKey.Message);
        }
        finally { PyTorchCheckpoint.DisposeTensors(root); }
    }
}
