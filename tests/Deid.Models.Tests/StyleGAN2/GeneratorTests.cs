using System.Text.Json;
using Deid.Models.StyleGAN2;
using Deid.Models.Weights;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Models.Tests.StyleGAN2;

public sealed class GeneratorTests
{
    private static string Fixture => TestPaths.Golden("reference", "stylegan2_small.safetensors");

    private static StyleGAN2Config FixtureConfig()
    {
        using var f = SafeTensorsFile.Open(Fixture);
        return StyleGAN2Config.FromJson(f.Metadata["config"]);
    }

    private static Generator LoadFixture()
    {
        var g = new Generator(FixtureConfig());
        StateDict.LoadFile(g, Fixture, "state.");
        g.eval();
        return g;
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what, double atol = 1e-4, double rtol = 1e-4)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var diff = (actual - expected).abs();
        using var tol = expected.abs() * rtol + atol;
        using var bad = diff.gt(tol);
        double max = diff.max().item<float>();
        Assert.True(bad.sum().item<long>() == 0, $"{what}: max abs diff {max:g3} exceeds atol {atol} / rtol {rtol}");
    }

    [Theory]
    [InlineData("stylegan2_keys_256_cm2.json", 256)]
    [InlineData("stylegan2_keys_1024_cm2.json", 1024)]
    public void StateDictMatchesRosinalityNamesShapesAndOrder(string keysFile, int size)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(TestPaths.Golden("reference", keysFile)));
        var expected = doc.RootElement.GetProperty("keys").EnumerateArray()
            .Select(k => (k.GetProperty("name").GetString()!, string.Join(",", k.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()))))
            .ToList();
        using var g = new Generator(new StyleGAN2Config { Size = size, StyleDim = 512, NMlp = 8, ChannelMultiplier = 2 });
        var actual = g.state_dict().Select(kv => (kv.Key, string.Join(",", kv.Value.shape))).ToList();
        Assert.Equal(expected, actual);
        long paramElements = g.parameters().Sum(p => p.numel());
        Assert.Equal(doc.RootElement.GetProperty("num_parameter_elements").GetInt64(), paramElements);
        Assert.Equal(doc.RootElement.GetProperty("n_latent").GetInt32(), g.NLatent);
    }

    /// <summary>Sizes other than the fixture's 32, with their own style width, mapping depth and channel table.</summary>
    [Theory]
    [InlineData(64, 16, 3)]
    [InlineData(128, 24, 1)]
    public void AnyPowerOfTwoSizeStyleDimAndMappingDepth_DrawsImagesOfThatSize(int size, int styleDim, int nMlp)
    {
        var channels = Enumerable.Range(2, 7).ToDictionary(i => 1 << i, i => 32 >> Math.Min(i - 2, 3));
        var cfg = new StyleGAN2Config { Size = size, StyleDim = styleDim, NMlp = nMlp, Channels = channels };
        manual_seed(1);
        using var g = new Generator(cfg);
        g.eval();
        using var scope = NewDisposeScope();
        Assert.Equal(nMlp, g.named_parameters().Count(p => p.name.StartsWith("style.", StringComparison.Ordinal) && p.name.EndsWith(".weight", StringComparison.Ordinal)));
        Assert.Equal(2 * (int)Math.Log2(size) - 2, g.NLatent);
        using var _ = no_grad();
        var images = g.forward(randn(2, styleDim));
        Assert.Equal(new long[] { 2, 3, size, size }, images.shape);
        Assert.True(images.isfinite().all().item<bool>());
        Assert.False(images[0].allclose(images[1]));
        Assert.Equal(new long[] { 1, 3, size, size }, g.Synthesize(randn(1, styleDim)).shape);
    }

    [Fact]
    public void ConfigRoundTripsThroughJsonAndReadsTheFixtureFormat()
    {
        var cfg = FixtureConfig();
        Assert.Equal(32, cfg.Size);
        Assert.Equal(64, cfg.StyleDim);
        Assert.Equal(2, cfg.NMlp);
        Assert.Equal(8, cfg.NLatent);
        Assert.Equal(7, cfg.NumLayers);
        Assert.Equal(24, cfg.ChannelsAt(8));
        var back = StyleGAN2Config.FromJson(cfg.ToJson());
        Assert.Equal(cfg.ToJson(), back.ToJson());
        Assert.Throws<ArgumentException>(() => StyleGAN2Config.FromJson("{\"size\": 48}"));
    }

    [Fact]
    public void ReproducesRosinalityOutputsOnTheSmallFixture()
    {
        using var g = LoadFixture();
        var r = StateDict.FromSafeTensors(Fixture);
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            Tensor z = r["in.z"], z2 = r["in.z2"];

            AssertClose(r["out.w"], g.Map(z), "out.w");
            AssertClose(r["out.img_z"], g.forward(z), "out.img_z");

            var avg = g.Map(r["in.z_mean"]).mean([0], keepdim: true);
            AssertClose(r["out.latent_avg"], avg, "out.latent_avg");

            var (trunc, _) = g.Generate([z], new GenerateOptions { Truncation = 0.7, TruncationLatent = r["out.latent_avg"] });
            AssertClose(r["out.img_w_trunc"], trunc, "out.img_w_trunc");

            AssertClose(r["out.img_wplus"], g.SynthesizeWPlus(r["in.wplus"]), "out.img_wplus");

            var (mix, latent) = g.Generate([z, z2], new GenerateOptions { InjectIndex = 3 });
            AssertClose(r["out.img_mix"], mix, "out.img_mix");
            AssertClose(r["out.latent_mix"], latent, "out.latent_mix");

            // W input is W+ with the same row everywhere.
            var w = g.Map(z);
            AssertClose(g.SynthesizeWPlus(w.unsqueeze(1).repeat(1, g.NLatent, 1)), g.Synthesize(w), "w vs w+", 1e-6, 1e-6);
        }
        finally
        {
            foreach (var t in r.Values) t.Dispose();
        }
    }

    [Fact]
    public void NoiseModesAndMeanLatent()
    {
        using var g = LoadFixture();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var z = randn(2, 64);
        var fixedA = g.forward(z);
        var fixedB = g.forward(z);
        Assert.True(fixedA.allclose(fixedB, 0, 0), "stored noise must be deterministic");
        var (rand, _) = g.Generate([z], new GenerateOptions { RandomizeNoise = true });
        Assert.False(rand.allclose(fixedA), "random noise should change the image");

        var m1 = g.MeanLatent(512, seed: 7);
        var m2 = g.MeanLatent(512, seed: 7);
        Assert.Same(m1, m2);
        Assert.Equal(new long[] { 1, 64 }, m1.shape);
        // ψ = 0 collapses every z onto the mean latent.
        var (t0, lat) = g.Generate([z], new GenerateOptions { Truncation = 0, TruncationLatent = m1 });
        Assert.True(lat.select(1, 0).allclose(m1.expand(2, 64), 1e-6, 1e-6));
        Assert.True(t0[0].allclose(t0[1], 1e-5, 1e-5));

        var ex = Assert.Throws<ArgumentException>(() => g.Generate([z], new GenerateOptions { Truncation = 0.5 }));
        Assert.Contains("truncation latent", ex.Message);
        Assert.Throws<ArgumentException>(() => g.Generate([randn(2, 63)]));
    }

    /// <summary>
    /// A batch takes the modulate-the-input path, one sample the modulated-weight path (ModulatedConv2d): images and
    /// gradients must not depend on which.
    /// </summary>
    [Fact]
    public void BatchAndSingleSamplePathsAgree_ImagesAndGradients()
    {
        using var g = LoadFixture();
        using var scope = NewDisposeScope();
        manual_seed(5);
        var w = randn(3, 64);
        Tensor batch;
        using (no_grad()) batch = g.Synthesize(w);
        for (var i = 0; i < 3; i++)
        {
            using var _ = no_grad();
            // the two paths sum in different orders: a few 1e-6 apart on these O(1) images
            AssertClose(batch[i..(i + 1)], g.Synthesize(w[i..(i + 1)]), $"sample {i}", 1e-4, 1e-4);
        }

        // Gradient with respect to w of one sample's image, alone and inside a batch.
        var wOne = w[0..1].clone().requires_grad_(true);
        g.Synthesize(wOne).square().sum().backward();
        var wAll = w.clone().requires_grad_(true);
        g.Synthesize(wAll)[0..1].square().sum().backward();
        // gradients reach a few thousand (differences ~1e-3): compare on that scale, not element by element near zero
        var scale = wOne.grad!.abs().max().item<float>();
        AssertClose(wOne.grad!, wAll.grad![0..1], "d image / d w", 1e-5 * scale, 1e-4);
        Assert.Equal(0, wAll.grad![1..].abs().max().item<float>());
    }

    [Fact]
    public void LoadingRejectsMismatchedWeights()
    {
        using var g = new Generator(FixtureConfig() with { StyleDim = 32 });
        var ex = Assert.Throws<WeightsException>(() => StateDict.LoadFile(g, Fixture, "state."));
        Assert.Contains("style.1.weight", ex.Message);
    }
}
