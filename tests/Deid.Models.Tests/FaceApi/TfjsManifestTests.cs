using Deid.Models.Weights;
using Deid.TestSupport;
using TorchSharp;
using Xunit;

namespace Deid.Models.Tests.FaceApi;

public class TfjsManifestTests
{
    /// <summary>float32, uint8-quantised and int32 weights, one of them straddling two shards.</summary>
    [Fact]
    public void Loads_float_quantized_and_int_weights_across_shards()
    {
        using var dir = new TempDir();
        var bytes = new List<byte>();
        foreach (var f in new[] { 1.5f, -2f, 3.25f, 0f }) bytes.AddRange(BitConverter.GetBytes(f)); // a: [2,2] float32
        bytes.AddRange(new byte[] { 0, 10, 255 });                                               // q: [3] uint8, scale 0.5, min -1
        bytes.AddRange(BitConverter.GetBytes(-7)); bytes.AddRange(BitConverter.GetBytes(42));    // i: [2] int32
        var all = bytes.ToArray();
        File.WriteAllBytes(dir.File("w.bin1"), all[..10]);
        File.WriteAllBytes(dir.File("w.bin2"), all[10..]);
        File.WriteAllText(dir.File("m.json"), """
            [{"paths":["w.bin1","w.bin2"],"weights":[
              {"name":"a","shape":[2,2],"dtype":"float32"},
              {"name":"q","shape":[3],"dtype":"float32","quantization":{"dtype":"uint8","scale":0.5,"min":-1}},
              {"name":"i","shape":[2],"dtype":"int32"}]}]
            """);
        var map = TfjsManifest.Load(dir.Path, "m.json");
        try
        {
            Assert.Equal(new long[] { 2, 2 }, map["a"].shape);
            Assert.Equal(new[] { 1.5f, -2f, 3.25f, 0f }, map["a"].data<float>().ToArray());
            Assert.Equal(new[] { -1f, 4f, 126.5f }, map["q"].data<float>().ToArray());
            Assert.Equal(new[] { -7f, 42f }, map["i"].data<float>().ToArray());
        }
        finally { foreach (var t in map.Values) t.Dispose(); }
    }

    [Fact]
    public void Truncated_shard_and_missing_files_give_clear_errors()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("w.bin"), new byte[6]);
        File.WriteAllText(dir.File("m.json"), """[{"paths":["w.bin"],"weights":[{"name":"a","shape":[2],"dtype":"float32"}]}]""");
        var ex = Assert.Throws<InvalidDataException>(() => TfjsManifest.Load(dir.Path, "m.json"));
        Assert.Contains("'a'", ex.Message);
        Assert.Throws<FileNotFoundException>(() => TfjsManifest.Load(dir.Path, "missing.json"));
        File.WriteAllText(dir.File("m2.json"), """[{"paths":["nope.bin"],"weights":[]}]""");
        Assert.Contains("nope.bin", Assert.Throws<FileNotFoundException>(() => TfjsManifest.Load(dir.Path, "m2.json")).Message);
    }

    [Fact]
    public void Layout_conversions_match_torch_conventions()
    {
        using var scope = torch.NewDisposeScope();
        var hwio = torch.arange(2 * 3 * 4 * 5, dtype: torch.ScalarType.Float32).reshape(2, 3, 4, 5);
        var oihw = TfjsManifest.ConvToTorch(hwio);
        Assert.Equal(new long[] { 5, 4, 2, 3 }, oihw.shape);
        Assert.Equal(hwio[1, 2, 3, 4].item<float>(), oihw[4, 3, 1, 2].item<float>());
        var hwc1 = torch.arange(3 * 3 * 6, dtype: torch.ScalarType.Float32).reshape(3, 3, 6, 1);
        var dw = TfjsManifest.DepthwiseToTorch(hwc1);
        Assert.Equal(new long[] { 6, 1, 3, 3 }, dw.shape);
        Assert.Equal(hwc1[2, 1, 5, 0].item<float>(), dw[5, 0, 2, 1].item<float>());
    }
}
