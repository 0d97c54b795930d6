using Deid.Models.Encoders;
using Deid.Models.Weights;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static Deid.Models.Tests.Encoders.EncoderFixtures;

namespace Deid.Models.Tests.Encoders;

public class IrSe50Tests
{
    [Fact]
    public void StateDict_MatchesPspBackboneKeysShapesAndOrder()
    {
        var expected = ExpectedKeys("irse50_keys.json");
        using var net = new IrSe50();
        Assert.Equal(397, expected.Count);
        Assert.Equal(expected, ActualKeys(net));
        Assert.Equal(expected.Select(e => (e.Name, e.Shape)), IrSe50.ExpectedKeys().Select(k => (k.Name, string.Join(",", k.Shape))));
    }

    public static TheoryData<string> Blocks => new() { "input_layer", "bottleneck_IR_SE_64_64_s2", "bottleneck_IR_SE_64_64_s1", "bottleneck_IR_SE_64_128_s2" };

    private static nn.Module<Tensor, Tensor> CreateBlock(string prefix) => prefix switch
    {
        "input_layer" => IrSe50.CreateInputLayer(64),
        "bottleneck_IR_SE_64_64_s2" => new BottleneckIRSE(64, 64, 2),
        "bottleneck_IR_SE_64_64_s1" => new BottleneckIRSE(64, 64, 1),
        "bottleneck_IR_SE_64_128_s2" => new BottleneckIRSE(64, 128, 2),
        _ => throw new ArgumentException(prefix),
    };

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Block_MatchesPspOutput(string prefix)
    {
        var path = Reference("irse50_blocks.safetensors");
        using var block = CreateBlock(prefix);
        block.eval();
        StateDict.LoadFile(block, path, prefix + ".state.");
        using var file = SafeTensorsFile.Open(path);
        using var input = file.Read(prefix + ".in");
        using var expected = file.Read(prefix + ".out");
        using var _ = no_grad();
        using var actual = block.call(input);
        AssertClose(expected, actual, what: prefix);
    }

    [Fact]
    public void L2Norm_MatchesPsp()
    {
        using var file = SafeTensorsFile.Open(Reference("irse50_blocks.safetensors"));
        using var input = file.Read("l2_norm.in");
        using var expected = file.Read("l2_norm.out");
        using var actual = IrSe50.L2Norm(input);
        AssertClose(expected, actual, 1e-6, 1e-5, "l2_norm");
    }

    [Fact]
    public void LoadStrict_ToleratesCheckpointWithoutNumBatchesTracked()
    {
        var path = Reference("irse50_blocks.safetensors");
        var state = StateDict.FromSafeTensors(path, "bottleneck_IR_SE_64_128_s2.state.");
        try
        {
            foreach (var key in state.Keys.Where(k => k.EndsWith("num_batches_tracked")).ToList())
            {
                state[key].Dispose();
                state.Remove(key);
            }
            using var block = new BottleneckIRSE(64, 128, 2);
            StateDict.LoadStrict(block, state);
            using var w = block.state_dict()["shortcut_layer.0.weight"];
            Assert.True((w == state["shortcut_layer.0.weight"]).all().item<bool>());
        }
        finally { DisposeAll(state); }
    }

    [Fact]
    public void SmallNetwork_EncodesUnitLengthCodes()
    {
        using var net = new IrSe50(width: 0.125);
        net.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var crops = torch.rand(3, 3, 256, 256) * 2 - 1;
        var codes = net.Encode(crops);
        Assert.Equal(512, net.Dim);
        Assert.Equal(new long[] { 3, 512 }, codes.shape);
        var norms = codes.norm(1);
        AssertClose(torch.ones(3), norms, 1e-5, 0, "unit norm");
    }

    [Fact]
    public void Preprocess_UsesOnlyThePspFaceWindow()
    {
        using var net = new IrSe50(width: 0.0625);
        using var scope = NewDisposeScope();
        var crops = torch.rand(1, 3, 256, 256) * 2 - 1;
        var baseline = net.Preprocess(crops);
        Assert.Equal(new long[] { 1, 3, 112, 112 }, baseline.shape);

        // Rows 0..34 and 223.., columns 0..31 and 220.. lie outside pSp's [35:223, 32:220] window.
        var outside = crops.clone();
        outside[.., .., TensorIndex.Slice(0, 35), ..] = torch.tensor(5f);
        outside[.., .., .., TensorIndex.Slice(220, null)] = torch.tensor(5f);
        Assert.True((net.Preprocess(outside) == baseline).all().item<bool>());

        var inside = crops.clone();
        inside[0, 0, 35, 32] = torch.tensor(5f);
        var changed = net.Preprocess(inside);
        Assert.False((changed == baseline).all().item<bool>());
        // The window's corner pixel only feeds the first output pixel (adaptive pooling of 188 → 112).
        Assert.NotEqual(baseline[0, 0, 0, 0].item<float>(), changed[0, 0, 0, 0].item<float>());
        Assert.Equal(baseline[0, 0, 5, 5].item<float>(), changed[0, 0, 5, 5].item<float>());

        // The bottom-right corner of the window is pixel (222, 219).
        var corner = crops.clone();
        corner[0, 1, 222, 219] = torch.tensor(5f);
        Assert.NotEqual(baseline[0, 1, 111, 111].item<float>(), net.Preprocess(corner)[0, 1, 111, 111].item<float>());
    }

    [Fact]
    public void RejectsWrongInput()
    {
        using var net = new IrSe50(width: 0.0625);
        using var wrongSize = torch.zeros(1, 3, 128, 128);
        Assert.Contains("[B,3,256,256]", Assert.Throws<ArgumentException>(() => net.Encode(wrongSize)).Message);
        Assert.Contains("[B,3,112,112]", Assert.Throws<ArgumentException>(() => net.call(wrongSize)).Message);
        Assert.Contains("50, 100 or 152", Assert.Throws<ArgumentException>(() => new IrSe50(numLayers: 34)).Message);
    }
}
