using Deid.Models.StyleGAN2;
using Deid.Models.Weights;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Models.Tests.Weights;

public sealed class PyTorchImportTests
{
    private static string Reference(string name) => TestPaths.Golden("reference", name);

    [Theory]
    [InlineData("stylegan2_small_gema.pt")]
    [InlineData("stylegan2_small_gema_legacy.pt")]
    public void ImportsStyleGAN2CheckpointBitForBit(string file)
    {
        using var tmp = new TempDir();
        var outPath = tmp.File("g.safetensors");
        var r = ModelImport.Import(Reference(file), "stylegan2", outPath);
        Assert.Equal(outPath, r.OutputPath);
        Assert.Equal(70, r.TensorCount);

        var reference = StateDict.FromSafeTensors(Reference("stylegan2_small.safetensors"));
        using var f = SafeTensorsFile.Open(outPath);
        try
        {
            var expectedKeys = reference.Keys.Where(k => k.StartsWith("state.")).Select(k => k["state.".Length..]).Append("latent_avg").ToList();
            Assert.Equal(expectedKeys, f.Keys.ToList());
            foreach (var k in expectedKeys)
            {
                using var got = f.Read(k);
                var want = k == "latent_avg" ? reference["out.latent_avg"][0] : reference["state." + k];
                Assert.Equal(want.shape, got.shape);
                using var wantBytes = want.contiguous();   // named: a Span keeps no tensor alive
                Assert.True(wantBytes.bytes.SequenceEqual(got.bytes), $"{k} differs");
            }
            Assert.Equal(SafeTensors.Sha256(Reference(file)), f.Metadata["source_sha256"]);
            Assert.Equal("stylegan2", f.Metadata["kind"]);
            Assert.Equal("g_ema", f.Metadata["source_key"]);
            var cfg = StyleGAN2Config.FromJson(f.Metadata["config"]);
            Assert.Equal((32, 64, 2, 8, 24, 16, 8), (cfg.Size, cfg.StyleDim, cfg.NMlp, cfg.ChannelsAt(4) / 4, cfg.ChannelsAt(8), cfg.ChannelsAt(16), cfg.ChannelsAt(32)));

            // The imported file is enough to rebuild G and reproduce rosinality's image.
            using var g = Generator.FromSafeTensors(outPath);
            Assert.NotNull(g.LatentAvg);
            using var _ = no_grad();
            using var img = g.forward(reference["in.z"]);
            Assert.True(img.allclose(reference["out.img_z"], 1e-4, 1e-4));
        }
        finally
        {
            foreach (var t in reference.Values) t.Dispose();
        }
    }

    [Fact]
    public void InfersRosinalityConfigFromShapes()
    {
        using var g = new Generator(new StyleGAN2Config { Size = 256, StyleDim = 512, NMlp = 8, ChannelMultiplier = 2 });
        var cfg = ModelImport.InferStyleGAN2Config(g.state_dict());
        Assert.Equal(256, cfg.Size);
        Assert.Equal(512, cfg.StyleDim);
        Assert.Equal(8, cfg.NMlp);
        Assert.Equal(2, cfg.ChannelMultiplier);
        Assert.Null(cfg.Channels);
    }

    [Fact]
    public void RejectsWrongKindAndKeyWithClearMessages()
    {
        using var tmp = new TempDir();
        var wrong = Assert.Throws<WeightsException>(() => ModelImport.Import(Reference("stylegan2_small_gema.pt"), "irse50", tmp.File("x.safetensors"), "g_ema"));
        Assert.Contains("does not match irse50", wrong.Message);
        Assert.Contains("missing 'input_layer.0.weight'", wrong.Message);
        Assert.False(File.Exists(tmp.File("x.safetensors")));

        var key = Assert.Throws<WeightsException>(() => ModelImport.Import(Reference("stylegan2_small_gema.pt"), "stylegan2", tmp.File("y.safetensors"), "g"));
        Assert.Contains("no dict 'g'", key.Message);

        Assert.Throws<ArgumentException>(() => ModelImport.Import(Reference("stylegan2_small_gema.pt"), "biggan", tmp.File("z.safetensors")));
    }
}
