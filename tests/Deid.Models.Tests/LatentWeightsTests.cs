using Deid.Models.Encoders;
using Deid.Models.Mapping;
using Deid.Models.Weights;
using Deid.TestSupport;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Deid.Models.Tests;

/// <summary>The one on-disk format of the trained E_attr and M: what is saved loads back as the same function.</summary>
public sealed class LatentWeightsTests
{
    [Theory]
    [InlineData(0L, false, InceptionInputNormalization.Zero255)]
    [InlineData(10L, true, InceptionInputNormalization.ImageNet)]
    public void AttrEncoder_RoundTrips(long classes, bool aux, InceptionInputNormalization norm)
    {
        using var tmp = new TempDir();
        var path = tmp.File(LatentWeights.AttrEncoderFile);
        torch.manual_seed(7);
        using var net = new InceptionV3(numClasses: classes, auxLogits: aux, width: 0.0625);
        using (no_grad())
            foreach (var (_, p) in net.named_parameters())
                if (p.dim() == 4) nn.init.kaiming_normal_(p);   // keeps a 48-layer random net's output away from 0
        net.eval();
        LatentWeights.SaveAttrEncoder(path, net, norm, new Dictionary<string, string> { ["source"] = "unit test" });

        var (back, backNorm) = LatentWeights.LoadAttrEncoder(path);
        using (back)
        {
            back.eval();
            Assert.Equal(norm, backNorm);
            Assert.Equal((classes, aux, 0.0625, net.FeatureDim), (back.NumClasses, back.HasAuxLogits, back.Width, back.FeatureDim));
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var x = InceptionV3.Preprocess(torch.rand(2, 3, 128, 128) * 2 - 1, norm);
            Assert.True(net.forward(x).allclose(back.forward(x), 0, 0));
            if (classes > 0) Assert.True(net.Logits(x).allclose(back.Logits(x), 0, 0));
        }
        using var f = SafeTensors.Open(path);
        Assert.Equal("unit test", f.Metadata["source"]);
        Assert.Equal(LatentWeights.Format, f.Metadata[LatentWeights.FormatKey]);
        Assert.Equal(PyTorchOrder.KeysAndShapes(net).Select(k => k.Name), f.Keys);
    }

    [Fact]
    public void Mapper_RoundTrips()
    {
        using var tmp = new TempDir();
        var path = tmp.File(LatentWeights.MapperFile);
        using var m = new M(24, new long[] { 16, 12, 8 }, negativeSlope: 0.1);
        LatentWeights.SaveMapper(path, m);
        using var back = LatentWeights.LoadMapper(path);
        Assert.Equal((24L, "16,12,8", 0.1), (back.InputDim, string.Join(",", back.Widths), back.NegativeSlope));
        using var _ = no_grad();
        using var x = torch.randn(3, 24);
        using var a = m.forward(x);
        using var b = back.forward(x);
        Assert.True(a.allclose(b, 0, 0));
    }

    [Fact]
    public void WrongKindAndForeignFiles_AreNamed()
    {
        using var tmp = new TempDir();
        var path = tmp.File("M.safetensors");
        using (var m = new M(4, new long[] { 2 })) LatentWeights.SaveMapper(path, m);
        var kind = Assert.Throws<WeightsException>(() => LatentWeights.LoadAttrEncoder(path));
        Assert.Contains("holds a 'mapper', not a 'attr-encoder'", kind.Message);

        var bare = tmp.File("bare.safetensors");
        using (var t = torch.zeros(2)) SafeTensors.Save(bare, [new("x", t)]);
        var foreign = Assert.Throws<WeightsException>(() => LatentWeights.LoadMapper(bare));
        Assert.Contains("not written by deid", foreign.Message);
    }
}
