using System.Text.Json;
using Deid.Models.Encoders;
using Deid.Models.Weights;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static Deid.Models.Tests.Encoders.EncoderFixtures;

namespace Deid.Models.Tests.Encoders;

public class InceptionV3Tests
{
    [Fact]
    public void StateDict_MatchesTorchvisionKeysShapesAndOrder()
    {
        var expected = ExpectedKeys("inception_v3_keys.json");
        using var net = new InceptionV3();
        var actual = ActualKeys(net);
        Assert.Equal(580, expected.Count);
        Assert.Equal(expected, actual);
        Assert.Equal(2048, net.FeatureDim);
    }

    [Fact]
    public void ExpectedKeys_ListsThePublishedNetwork()
    {
        var expected = ExpectedKeys("inception_v3_keys.json");
        var keys = InceptionV3.ExpectedKeys();
        Assert.Equal(expected.Select(e => (e.Name, e.Shape)), keys.Select(k => (k.Name, string.Join(",", k.Shape))));
    }

    public static TheoryData<string> Blocks => new() { "BasicConv2d", "BasicConv2d_1x7", "InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE" };

    private static nn.Module<Tensor, Tensor> CreateBlock(string prefix) => prefix switch
    {
        "BasicConv2d" => new BasicConv2d(3, 32, 3, stride: 2),
        "BasicConv2d_1x7" => new BasicConv2d(16, 24, (1, 7), padding: (0, 3)),
        "InceptionA" => new InceptionA(192, 32),
        "InceptionB" => new InceptionB(288),
        "InceptionC" => new InceptionC(768, 128),
        "InceptionD" => new InceptionD(768),
        "InceptionE" => new InceptionE(1280),
        _ => throw new ArgumentException(prefix),
    };

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Block_MatchesTorchvisionOutput(string prefix)
    {
        using var file = SafeTensorsFile.Open(Reference("inception_blocks.safetensors"));
        using var block = CreateBlock(prefix);
        block.eval();

        // The fixture's key list is the block's state_dict order, which the weight formula indexes by.
        using (var meta = JsonDocument.Parse(file.Metadata[prefix]))
        {
            var fixtureKeys = meta.RootElement.GetProperty("keys").EnumerateArray()
                .Select(e => (e[0].GetString()!, string.Join(",", e[1].EnumerateArray().Select(x => x.GetInt64())))).ToList();
            Assert.Equal(fixtureKeys, ActualKeys(block).Select(a => (a.Name, a.Shape)));
        }

        var weights = FormulaWeights(block);
        try { StateDict.LoadStrict(block, weights); }
        finally { DisposeAll(weights); }

        using var input = file.Read(prefix + ".in");
        using var expected = file.Read(prefix + ".out");
        using var _ = no_grad();
        using var actual = block.call(input);
        AssertClose(expected, actual, what: prefix);
    }

    private static void RandomiseBatchNorm(nn.Module module)
    {
        using var _ = no_grad();
        foreach (var (name, t) in module.named_buffers().Concat(module.named_parameters().Select(p => (p.name, (Tensor)p.parameter))))
        {
            if (name.EndsWith("running_var")) t.copy_(torch.rand_like(t) + 0.5);
            else if (name.EndsWith("running_mean") || name.EndsWith("bn.bias")) t.copy_(torch.randn_like(t) * 0.1);
            else if (name.EndsWith("bn.weight")) t.copy_(torch.rand_like(t) + 0.5);
        }
    }

    [Fact]
    public void BasicConv2d_InPlaceInferenceMatchesAutogradPath_AndFollowsParameterChanges()
    {
        using var scope = NewDisposeScope();
        using var block = new BasicConv2d(8, 16, 3, padding: 1);
        RandomiseBatchNorm(block);
        block.eval();
        var x = torch.randn(2, 8, 12, 12);
        var xCopy = x.clone();

        // Grad enabled takes the plain bn → relu path; no_grad the in-place one.
        var reference = block.call(x);
        Tensor fast;
        using (no_grad()) fast = block.call(x);
        AssertClose(reference, fast, atol: 1e-5, rtol: 1e-5, what: "eval no_grad vs eval autograd");
        Assert.True(x.allclose(xCopy, 0, 0), "the input must not be modified in place");

        // Nothing is cached: new statistics show up in the very next no_grad call.
        RandomiseBatchNorm(block);
        var reference2 = block.call(x);
        Tensor fast2;
        using (no_grad()) fast2 = block.call(x);
        AssertClose(reference2, fast2, atol: 1e-5, rtol: 1e-5, what: "after changing bn parameters");
        Assert.False(fast2.allclose(fast, 1e-3, 1e-3));

        // Train mode normalises with batch statistics, with or without autograd.
        block.train();
        var trainGrad = block.call(x);
        Tensor trainNoGrad;
        using (no_grad()) trainNoGrad = block.call(x);
        AssertClose(trainGrad, trainNoGrad, atol: 1e-5, rtol: 1e-5, what: "train mode");
        Assert.False(trainGrad.allclose(reference2, 1e-3, 1e-3));
    }

    [Fact]
    public void BasicConv2d_EvalBackwardStillWorks()
    {
        // E_attr may sit frozen in eval mode inside a loss: gradients must reach the input.
        using var scope = NewDisposeScope();
        using var block = new BasicConv2d(4, 8, 3);
        RandomiseBatchNorm(block);
        block.eval();
        var x = torch.randn(1, 4, 9, 9).requires_grad_();
        block.call(x).sum().backward();
        Assert.NotNull(x.grad);
        Assert.True(x.grad!.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void SmallNetwork_ProducesPooledFeatures()
    {
        using var net = new InceptionV3(numClasses: 10, width: 0.125);
        net.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var crops = torch.rand(2, 3, 256, 256) * 2 - 1;
        var x = InceptionV3.Preprocess(crops);
        Assert.Equal(new long[] { 2, 3, 299, 299 }, x.shape);
        var features = net.call(x);
        Assert.Equal(new long[] { 2, net.FeatureDim }, features.shape);
        Assert.True(features.isfinite().all().item<bool>());
        // Features follow a ReLU and an average pool, so they are non-negative.
        Assert.True(features.min().item<float>() >= 0);
        Assert.Equal(new long[] { 2, 10 }, net.Logits(x).shape);
        Assert.Equal(new long[] { 2, 10 }, net.AuxiliaryLogits(x)!.shape);
        // Each sample is independent of the others in the batch (eval-mode BN).
        var single = net.call(x.slice(0, 1, 2, 1));
        AssertClose(features.slice(0, 1, 2, 1), single, 1e-5, 1e-4, "batch independence");
    }

    /// <summary>Inference runs in channels-last strides, the autograd path in NCHW: same features, contiguous output.</summary>
    [Fact]
    public void ChannelsLastInference_MatchesTheAutogradPath()
    {
        using var net = new InceptionV3(width: 0.25);
        net.eval();
        using var scope = NewDisposeScope();
        torch.manual_seed(9);
        var x = torch.randn(2, 3, 299, 299);
        Tensor fast;
        using (no_grad()) fast = net.call(x);
        var reference = net.call(x);
        Assert.True(reference.requires_grad);
        Assert.True(fast.is_contiguous());
        AssertClose(reference.detach(), fast, 1e-5, 1e-4, "channels-last inference");
    }

    [Fact]
    public void Preprocess_NormalisesAsRequested()
    {
        using var scope = NewDisposeScope();
        var grey = torch.zeros(1, 3, 299, 299);
        var tf = InceptionV3.Preprocess(grey, InceptionInputNormalization.MinusOneToOne);
        Assert.Equal(0f, tf.abs().max().item<float>());
        var imagenet = InceptionV3.Preprocess(grey, InceptionInputNormalization.ImageNet);
        // 0 in [-1,1] is 0.5 in [0,1]: (0.5 - mean) / std per channel.
        Assert.Equal((0.5f - 0.485f) / 0.229f, imagenet[0, 0, 0, 0].item<float>(), 4);
        Assert.Equal((0.5f - 0.406f) / 0.225f, imagenet[0, 2, 10, 10].item<float>(), 4);
        var resized = InceptionV3.Preprocess(torch.ones(3, 3, 256, 256));
        Assert.Equal(new long[] { 3, 3, 299, 299 }, resized.shape);
        Assert.Equal(1f, resized.min().item<float>(), 5);
    }

    [Fact]
    public void Forward_RejectsWrongShapes()
    {
        using var net = new InceptionV3(width: 0.0625);
        using var bad = torch.zeros(1, 1, 299, 299);
        var e = Assert.Throws<ArgumentException>(() => net.call(bad));
        Assert.Contains("[B,3,H,W]", e.Message);
        using var tiny = torch.zeros(1, 3, 40, 40);
        Assert.Contains("75x75", Assert.Throws<ArgumentException>(() => net.call(tiny)).Message);
    }
}
