using Deid.Models.Encoders;
using Deid.Models.Mapping;
using Deid.Models.StyleGAN2;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Deid.Models.Tests.Mapping;

/// <summary>
/// The method at its published sizes, random weights (the real ones cannot be downloaded here): IR-SE50 (512-d) and
/// InceptionV3 (2048-d) → M 2560→2048→1024→512→512 → StyleGAN2 FFHQ-256. The other tests use narrow networks;
/// this one shows the full-size shapes line up end to end (about 8 s and 1.3 GB on 2 CPU cores).
/// </summary>
public class RealSizeCompositionTests
{
    [Fact]
    public void PublishedSizes_EncodeOnce_MapABatch_Draw256()
    {
        manual_seed(2);
        var eId = new IrSe50();
        var eAttr = new InceptionV3();
        var m = new M();
        var g = new Deid.Models.StyleGAN2.Generator(StyleGAN2Config.Ffhq256);
        Assert.Equal(512, eId.Dim);
        Assert.Equal(2048, eAttr.FeatureDim);
        Assert.Equal(512, g.StyleDim);
        using var model = new IdentityDisentangler(eId, eAttr, m, g);
        using var scope = NewDisposeScope();

        var idCode = model.EncodeIdentity(torch.rand(1, 3, 256, 256) * 2 - 1);
        Assert.Equal(new long[] { 1, 512 }, idCode.shape);
        Assert.True(idCode.norm(1).allclose(torch.ones(1), 1e-4, 1e-4));   // ArcFace codes are unit length

        var attrCrops = torch.rand(2, 3, 256, 256) * 2 - 1;
        var w = model.MapAttributes(idCode, attrCrops);
        Assert.Equal(new long[] { 2, 512 }, w.shape);
        var images = model.Generate(idCode, attrCrops);
        Assert.Equal(new long[] { 2, 3, 256, 256 }, images.shape);
        Assert.True(images.isfinite().all().item<bool>());
        Assert.False(images.requires_grad);
    }
}
