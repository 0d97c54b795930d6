using Deid.Models.Encoders;
using Deid.Models.Mapping;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Deid.Models.Tests.Mapping;

public class IdentityDisentanglerTests
{
    /// <summary>E_id stand-in that counts its calls and gives each crop a code from its mean colour.</summary>
    private sealed class CountingIdentityEncoder : IIdentityEncoder
    {
        public int Calls;
        public int Dim => 8;
        public Tensor Encode(Tensor crops)
        {
            Calls++;
            using var scope = NewDisposeScope();
            var mean = crops.mean(new long[] { 2, 3 });                  // [B,3]
            var code = torch.cat(new[] { mean, mean * 2, mean.sin(), mean.narrow(1, 0, 2) * -1 }, 1);  // 3+3+... → trim to Dim
            return torch.nn.functional.normalize(code.narrow(1, 0, Dim), p: 2, dim: 1).MoveToOuterDisposeScope();
        }
    }

    /// <summary>G stand-in: a fixed random projection of w to a small image.</summary>
    private sealed class FakeGenerator : IGenerator, IDisposable
    {
        private readonly Tensor _proj;
        public int Calls;
        public FakeGenerator(int styleDim) { StyleDim = styleDim; _proj = torch.randn(styleDim, 3 * 16 * 16); }
        public int StyleDim { get; }
        public Tensor Synthesize(Tensor w)
        {
            Calls++;
            using var scope = NewDisposeScope();
            return torch.tanh(w.matmul(_proj)).view(w.shape[0], 3, 16, 16).MoveToOuterDisposeScope();
        }
        public void Dispose() => _proj.Dispose();
    }

    private static IdentityDisentangler Build(out CountingIdentityEncoder eId, out FakeGenerator g)
    {
        torch.manual_seed(7);
        eId = new CountingIdentityEncoder();
        var eAttr = HeInit(new InceptionV3(numClasses: 4, width: 0.0625));
        var m = new M(eId.Dim + eAttr.FeatureDim, new long[] { 64, 48, 32, 24 });
        g = new FakeGenerator(24);
        return new IdentityDisentangler(eId, eAttr, m, g);
    }

    /// <summary>
    /// PyTorch's default conv init shrinks activations ~6x per layer, so a random 48-layer Inception in
    /// eval mode outputs ~1e-8 whatever the input; He init keeps the signal so inputs stay distinguishable.
    /// </summary>
    private static T HeInit<T>(T net) where T : nn.Module
    {
        using var _ = no_grad();
        foreach (var (name, p) in net.named_parameters())
            if (p.dim() == 4) nn.init.kaiming_normal_(p);
        return net;
    }

    [Fact]
    public void Generate_FlowsShapesEndToEnd_AndReusesTheIdentityCode()
    {
        using var model = Build(out var eId, out var g);
        using var scope = NewDisposeScope();
        var idCrop = torch.rand(1, 3, 256, 256) * 2 - 1;
        var idCode = model.EncodeIdentity(idCrop);
        Assert.Equal(new long[] { 1, 8 }, idCode.shape);

        var attrA = torch.rand(3, 3, 256, 256) * 2 - 1;
        var attrB = torch.rand(3, 3, 256, 256) * 2 - 1;
        var wA = model.MapAttributes(idCode, attrA);
        var wB = model.MapAttributes(idCode, attrB);
        Assert.Equal(new long[] { 3, 24 }, wA.shape);
        Assert.False(wA.allclose(wB), "different attribute crops must give different W codes");
        // Within a batch, different crops also give different codes.
        Assert.False(wA[0].allclose(wA[1]));

        var images = model.Generate(idCode, attrA);
        Assert.Equal(new long[] { 3, 3, 16, 16 }, images.shape);
        Assert.True(images.allclose(g.Synthesize(wA), 1e-5, 1e-6));
        Assert.Equal(1, eId.Calls);                 // the identity was encoded once, not per frame
        Assert.False(images.requires_grad);         // inference mode

        // Same crops, same identity → same W (deterministic, eval-mode networks).
        Assert.True(model.MapAttributes(idCode, attrA).allclose(wA, 1e-6, 1e-7));
        // A different identity changes W for the same attribute crops.
        var otherId = model.EncodeIdentity(torch.rand(1, 3, 256, 256) * 2 - 1);
        Assert.False(model.MapAttributes(otherId, attrA).allclose(wA));
        // One code per crop is accepted too.
        var perCrop = idCode.expand(3, 8);
        Assert.True(model.MapAttributes(perCrop, attrA).allclose(wA, 1e-6, 1e-7));
    }

    [Fact]
    public void Errors_NameTheMismatch()
    {
        using var model = Build(out _, out _);
        using var scope = NewDisposeScope();
        var crops = torch.zeros(2, 3, 256, 256);
        var e = Assert.Throws<ArgumentException>(() => model.MapAttributes(torch.zeros(1, 5), crops));
        Assert.Contains("[1,8]", e.Message);
        Assert.Contains("3 identity codes for 2", Assert.Throws<ArgumentException>(() => model.MapAttributes(torch.zeros(3, 8), crops)).Message);
        Assert.Contains("[B,3,H,W]", Assert.Throws<ArgumentException>(() => model.EncodeIdentity(torch.zeros(3, 256, 256))).Message);

        var eAttr = new InceptionV3(width: 0.0625);
        var wrongM = new M(100, new long[] { 24 });
        using var g = new FakeGenerator(24);
        var ex = Assert.Throws<ArgumentException>(() => new IdentityDisentangler(new CountingIdentityEncoder(), eAttr, wrongM, g));
        Assert.Contains("E_id (8) + E_attr", ex.Message);
        wrongM.Dispose();
        var m = new M(8 + eAttr.FeatureDim, new long[] { 32 });
        Assert.Contains("W space is 24-d", Assert.Throws<ArgumentException>(() => new IdentityDisentangler(new CountingIdentityEncoder(), eAttr, m, g)).Message);
        m.Dispose();
        eAttr.Dispose();
    }

    [Fact]
    public void WithIrSe50AsIdentityEncoder_CodesAreUnitLength()
    {
        torch.manual_seed(3);
        var eId = new IrSe50(width: 0.0625);
        var eAttr = HeInit(new InceptionV3(width: 0.0625));
        var m = new M(eId.Dim + eAttr.FeatureDim, new long[] { 32, 16 });
        using var model = new IdentityDisentangler(eId, eAttr, m, new FakeGenerator(16));
        using var scope = NewDisposeScope();
        var code = model.EncodeIdentity(torch.rand(2, 3, 256, 256) * 2 - 1);
        Assert.Equal(new long[] { 2, 512 }, code.shape);
        Assert.True(code.norm(1).allclose(torch.ones(2), 1e-5, 1e-5));
        Assert.Equal(new long[] { 2, 3, 16, 16 }, model.Generate(code, torch.rand(2, 3, 256, 256) * 2 - 1).shape);
    }

    [Fact]
    public void WithTheSmallStyleGan2_DrawsImagesForEachAttributeCrop()
    {
        var path = Deid.TestSupport.TestPaths.Golden("reference", "stylegan2_small.safetensors");
        if (!File.Exists(path)) Assert.Skip($"reference fixture missing: {path} (part of the read-only ../shared data)");
        torch.manual_seed(11);
        var g = Deid.Models.StyleGAN2.Generator.FromSafeTensors(path, "state.");
        var eId = new IrSe50(width: 0.0625);
        var eAttr = HeInit(new InceptionV3(width: 0.0625));
        var m = new M(eId.Dim + eAttr.FeatureDim, new long[] { 128, 96, 64, g.StyleDim });
        using var model = new IdentityDisentangler(eId, eAttr, m, g);
        using var scope = NewDisposeScope();
        var id = model.EncodeIdentity(torch.rand(1, 3, 256, 256) * 2 - 1);
        var attr = torch.rand(2, 3, 256, 256) * 2 - 1;
        var images = model.Generate(id, attr);
        Assert.Equal(new long[] { 2, 3, g.Size, g.Size }, images.shape);
        Assert.True(images.isfinite().all().item<bool>());
        Assert.False(images[0].allclose(images[1]), "different attribute crops must give different images");
        // Generate is exactly G(M(id, attr)) with G's fixed noise.
        Assert.True(images.allclose(g.Synthesize(model.MapAttributes(id, attr)), 1e-5, 1e-5));
    }

    [Fact]
    public void CropTensors_RoundTripBgrBytes()
    {
        using var scope = NewDisposeScope();
        var bytes = new byte[2 * 3 * 3];
        for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i * 14);
        var rgb = CropTensors.FromBgr24(bytes, 2, 3);
        Assert.Equal(new long[] { 1, 3, 2, 3 }, rgb.shape);
        // Pixel (0,0) is B=0, G=14, R=28 → RGB channels 28, 14, 0.
        Assert.Equal(28 / 127.5f - 1, rgb[0, 0, 0, 0].item<float>(), 5);
        Assert.Equal(0 / 127.5f - 1, rgb[0, 2, 0, 0].item<float>(), 5);
        var back = CropTensors.ToBgrHwc(rgb);
        Assert.Equal(new long[] { 1, 2, 3, 3 }, back.shape);
        Assert.Equal(bytes, back.data<byte>().ToArray());
        Assert.Throws<ArgumentException>(() => CropTensors.FromBgr24(bytes, 3, 3));
    }

    [Fact]
    public void DeviceSelection_ResolvesAndExplains()
    {
        Assert.Equal(DeviceType.CPU, DeviceSelection.Resolve("cpu").type);
        Assert.Equal(DeviceType.CPU, DeviceSelection.Resolve(null).type);
        var auto = DeviceSelection.Resolve("auto");
        Assert.Equal(DeviceSelection.CudaAvailable() ? DeviceType.CUDA : DeviceType.CPU, auto.type);
        Assert.Contains("unknown device 'tpu'", Assert.Throws<ArgumentException>(() => DeviceSelection.Resolve("tpu")).Message);
        if (!DeviceSelection.CudaAvailable())
            Assert.Contains("CUDA was requested but is not available", Assert.Throws<InvalidOperationException>(() => DeviceSelection.Resolve("cuda")).Message);
        else
            Assert.Equal(DeviceType.CUDA, DeviceSelection.Resolve("cuda:0").type);
    }
}
