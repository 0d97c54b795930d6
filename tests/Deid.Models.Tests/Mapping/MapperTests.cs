using Deid.Models.Mapping;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Deid.Models.Tests.Mapping;

public class MapperTests
{
    [Fact]
    public void M_ReferenceConfiguration_HasDocumentedKeys()
    {
        using var m = new M();
        var keys = m.state_dict().Select(kv => (kv.Key, string.Join(",", kv.Value.shape))).ToList();
        Assert.Equal(new[]
        {
            ("layers.0.weight", "2048,2560"), ("layers.0.bias", "2048"),
            ("layers.1.weight", "1024,2048"), ("layers.1.bias", "1024"),
            ("layers.2.weight", "512,1024"), ("layers.2.bias", "512"),
            ("layers.3.weight", "512,512"), ("layers.3.bias", "512"),
        }.OrderBy(k => k.Item1), keys.OrderBy(k => k.Item1));
        Assert.Equal(2560, m.InputDim);
        Assert.Equal(512, m.OutputDim);
    }

    [Fact]
    public void M_IsFourLinearLayersWithLeakyReluBetween()
    {
        using var m = new M(12, new long[] { 10, 8, 6, 4 });
        using var scope = NewDisposeScope();
        var x = torch.randn(5, 12);
        var sd = m.state_dict();
        var y = x;
        for (int i = 0; i < 4; i++)
        {
            y = F.linear(y, sd[$"layers.{i}.weight"], sd[$"layers.{i}.bias"]);
            if (i < 3) y = torch.where(y >= 0, y, y * 0.2);
        }
        using var _ = no_grad();
        var actual = m.call(x);
        Assert.True(actual.allclose(y, 1e-5, 1e-6));
        // No activation after the last layer: W codes may be negative.
        Assert.True(m.call(torch.randn(64, 12) * 10).min().item<float>() < 0);

        var id = x.slice(1, 0, 5, 1);
        var attr = x.slice(1, 5, 12, 1);
        Assert.True(m.Map(id, attr).allclose(actual, 1e-6, 1e-7));
    }

    [Fact]
    public void M_RejectsMismatchedInput()
    {
        using var m = new M(12, new long[] { 4 });
        using var x = torch.zeros(2, 13);
        Assert.Contains("[B,12]", Assert.Throws<ArgumentException>(() => m.call(x)).Message);
        Assert.Throws<ArgumentException>(() => new M(12, Array.Empty<long>()));
    }

    [Fact]
    public void DW_ReferenceConfiguration_ScoresEachCode()
    {
        using var d = new DW();
        var shapes = d.state_dict().ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.shape));
        Assert.Equal(8, shapes.Count);
        Assert.Equal("256,512", shapes["layers.0.weight"]);
        Assert.Equal("128,256", shapes["layers.1.weight"]);
        Assert.Equal("64,128", shapes["layers.2.weight"]);
        Assert.Equal("1,64", shapes["layers.3.weight"]);
        using var scope = NewDisposeScope();
        var w = torch.randn(7, 512);
        var logits = d.call(w);
        Assert.Equal(new long[] { 7, 1 }, logits.shape);

        var sd = d.state_dict();
        var y = w;
        for (int i = 0; i < 4; i++)
        {
            y = F.linear(y, sd[$"layers.{i}.weight"], sd[$"layers.{i}.bias"]);
            if (i < 3) y = F.leaky_relu(y, 0.2);
        }
        Assert.True(logits.allclose(y, 1e-5, 1e-6));
        Assert.Throws<ArgumentException>(() => new DW(512, new long[] { 256, 2 }));
    }
}
