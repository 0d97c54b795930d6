using Deid.Models;
using Deid.TestSupport;

namespace Deid.Cli.Tests;

/// <summary><c>deid models verify</c> run as a user would, on a scratch models directory.</summary>
public sealed class ModelsCliTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private string Store(out string weights)
    {
        var store = new ModelStore(_tmp.Path);
        weights = Path.Combine(_tmp.Path, "irse50", "model_ir_se50.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(weights)!);
        File.WriteAllBytes(weights, [1, 2, 3, 4]);
        store.Record(weights, "imported from model_ir_se50.pth");
        return _tmp.Path;
    }

    [Fact]
    public void Verify_IntactStore_ExitsZero()
    {
        var r = RunDeid("models", "verify", "--models", Store(out _));
        Assert.True(r.Code == 0, r.StdErr);
        Assert.Contains("irse50/model_ir_se50.safetensors", r.StdOut);
        Assert.Contains("all 1 recorded files match their sha256", r.StdOut);
    }

    [Fact]
    public void Verify_ChangedFile_IsNamedInOneErrorLine()
    {
        var dir = Store(out var weights);
        File.WriteAllBytes(weights, [1, 2, 3, 5]);   // same size, other bytes: only the hash can tell
        var line = OneErrorLine(RunDeid("models", "verify", "--models", dir));
        Assert.StartsWith("deid: error: 1 of 1 recorded files failed verification (1 changed, 0 missing: irse50/model_ir_se50.safetensors)", line);
        Assert.Contains("imported again", line);
    }

    [Fact]
    public void Import_MissingFile_SaysSo()
    {
        var r = RunDeid("models", "import", _tmp.File("550000.pt"), "--as", "stylegan2", "--models", _tmp.Path);
        Assert.Equal(1, r.Code);
        var line = OneErrorLine(r);
        Assert.Equal($"deid: error: checkpoint not found: {_tmp.File("550000.pt")}", line);
        Assert.Empty(Directory.GetFileSystemEntries(_tmp.Path));
    }

    [Fact]
    public void Import_UnknownKind_ListsTheKnownOnesOnOneLine()
    {
        var r = RunDeid("models", "import", _tmp.File("550000.pt"), "--as", "biggan", "--models", _tmp.Path);
        Assert.Equal(2, r.Code);
        var line = OneErrorLine(r);
        Assert.Contains("'biggan' not recognized. Must be one of: 'stylegan2', 'irse50', 'inception', 'port-attr-encoder', 'port-mapper'", line);
        Assert.EndsWith("(see `deid models import --help`)", line);
    }

    [Fact]
    public void Import_PortMapper_FillsTheCatalogueAndListShowsIt()
    {
        var src = Path.Combine(_tmp.Path, "published");
        if (PortFixtures.TryMake(src, "mapper") is { } why) Assert.Skip(why);
        var store = Path.Combine(_tmp.Path, "models");
        var pt = Path.Combine(src, "maper_FIXTURE_0.pt");

        var r = RunDeid("models", "import", pt, "--as", "port-mapper", "--models", store);
        Assert.True(r.Code == 0, r.StdErr);
        var written = Path.Combine(store, "latent", "M.safetensors");
        Assert.Contains($"wrote {written}: port-mapper, 8 tensors", r.StdOut);
        var recorded = new ModelStore(store).ReadManifest()["latent/M.safetensors"];
        Assert.Equal(ModelStore.Sha256Of(written), recorded.Sha256);
        Assert.Contains(ModelStore.Sha256Of(pt), recorded.Source);

        var list = RunDeid("models", "list", "--models", store);
        Assert.True(list.Code == 0, list.StdErr);
        var row = Assert.Single(list.StdOut.Split('\n'), l => l.Contains("latent/M.safetensors"));
        Assert.Contains("present", row);
        Assert.Contains(recorded.Sha256[..12], row);
        Assert.Contains("attr-encoder missing", list.StdOut);
        Assert.Contains("deid models import attr_encoder_*.pt --as port-attr-encoder", list.StdOut);

        // -o still writes elsewhere, and a file outside the store is not recorded in its manifest.
        var elsewhere = Path.Combine(_tmp.Path, "mine.safetensors");
        Assert.Equal(0, RunDeid("models", "import", pt, "--as", "port-mapper", "--models", store, "-o", elsewhere).Code);
        Assert.True(File.Exists(elsewhere));
        Assert.Single(new ModelStore(store).ReadManifest());
    }

    [Fact]
    public void Import_PortKind_WithAnotherFileName_SaysWhatItExpects()
    {
        var pt = _tmp.File("weights.pt");
        File.WriteAllBytes(pt, [1, 2, 3]);
        var line = OneErrorLine(RunDeid("models", "import", pt, "--as", "port-attr-encoder", "--models", _tmp.Path));
        Assert.Contains("weights.pt is not a known checkpoint for model 'attr-encoder' (expected attr_encoder_*.pt); pass -o", line);
    }

    [Fact]
    public void Verify_WithoutManifest_SaysWhatToRun()
    {
        var line = OneErrorLine(RunDeid("models", "verify", "--models", _tmp.Path));
        Assert.Contains("no manifest.json", line);
        Assert.Contains("deid models fetch", line);
    }
}
