using Deid.Models.Weights;
using Deid.TestSupport;
using Xunit;

namespace Deid.Models.Tests;

/// <summary>ModelStore.CheckBeforeLoad: the one sha256 check every weights loader makes (issue 12).</summary>
public class WeightsCheckTests
{
    private static string Recorded(TempDir dir, byte[] bytes, string rel = "irse50/model_ir_se50.safetensors")
    {
        var path = Path.Combine(dir.Path, rel);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, bytes);
        new ModelStore(dir.Path).Record(path, "imported from model_ir_se50.pth");
        return path;
    }

    [Fact]
    public void IntactFile_Passes_AndIsCachedBySizeAndMtime()
    {
        using var dir = new TempDir();
        var path = Recorded(dir, [1, 2, 3, 4]);
        Assert.Equal("9f64a747e1b97f131fabb6b447296c9b6f0201e79fb3c5356e6c77e89b6a806a", ModelStore.CheckBeforeLoad(path));
        var cache = File.ReadAllText(Path.Combine(dir.Path, ModelStore.VerifiedCacheFile));
        Assert.Contains("irse50/model_ir_se50.safetensors", cache);
        Assert.Contains("9f64a747e1b97f131fabb6b447296c9b6f0201e79fb3c5356e6c77e89b6a806a", cache);
    }

    [Fact]
    public void ChangedFile_SameSize_IsRefusedWithOneLineNamingItAndTheFix()
    {
        using var dir = new TempDir();
        var path = Recorded(dir, [1, 2, 3, 4]);
        Assert.NotNull(ModelStore.CheckBeforeLoad(path));
        File.WriteAllBytes(path, [1, 2, 3, 5]);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(1));
        var e = Assert.Throws<WeightsChangedException>(() => ModelStore.CheckBeforeLoad(path));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(path, e.Message);
        Assert.Contains("deid models import", e.Message);
        Assert.Contains("deid models fetch", e.Message);
    }

    [Fact]
    public void ChangedSize_IsRefusedWithoutHashing()
    {
        using var dir = new TempDir();
        var path = Recorded(dir, [1, 2, 3, 4], "face-api/ssd_mobilenetv1_model.bin");
        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Contains("3 bytes, recorded 4", Assert.Throws<WeightsChangedException>(() => ModelStore.CheckBeforeLoad(path)).Message);
    }

    [Fact]
    public void UnrecordedFile_LoadsWithAWarning()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "stray.safetensors");
        File.WriteAllBytes(path, [9, 9]);
        var warnings = new List<string>();
        var old = ModelStore.WarningSink;
        ModelStore.WarningSink = warnings.Add;
        try { Assert.Null(ModelStore.CheckBeforeLoad(path)); }
        finally { ModelStore.WarningSink = old; }
        Assert.Contains(warnings, w => w.Contains(path) && w.Contains("without a sha256 check"));
    }

    [Fact]
    public void SafeTensorsLoad_GoesThroughTheCheck()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "irse50", "model_ir_se50.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var t = TorchSharp.torch.ones(2, 2))
            SafeTensors.Save(path, new Dictionary<string, TorchSharp.torch.Tensor> { ["w"] = t });
        new ModelStore(dir.Path).Record(path, "imported");
        using (SafeTensors.Open(path)) { }
        var bytes = File.ReadAllBytes(path);
        bytes[^1] ^= 0x40;
        File.WriteAllBytes(path, bytes);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(1));
        Assert.Throws<WeightsChangedException>(() => SafeTensors.Open(path));
    }
}
