using Deid.TestSupport;
using Xunit;

namespace Deid.Models.Tests;

public class ModelStoreTests
{
    [Fact]
    public void Catalogue_names_every_role_and_how_to_get_each_model()
    {
        var roles = ModelStore.Catalogue.Select(e => e.Role).ToHashSet();
        foreach (var r in new[] { "E_id", "E_lnd", "G", "E_attr", "detector", "evaluation recognizer" }) Assert.Contains(r, roles);
        Assert.All(ModelStore.Catalogue, e => { Assert.NotEmpty(e.Source); Assert.StartsWith("deid models ", e.HowToGet.Split("&& ")[^1]); });
        Assert.Equal(ModelStore.Catalogue.Count, ModelStore.Catalogue.Select(e => e.Name).Distinct().Count());
    }

    [Fact]
    public void Empty_store_lists_everything_missing()
    {
        using var dir = new TempDir();
        var list = new ModelStore(dir.Path).List();
        Assert.Equal(ModelStore.Catalogue.Count, list.Count);
        Assert.All(list, s => { Assert.False(s.Present); Assert.StartsWith(dir.Path, s.Path); });
    }

    [Fact]
    public void Imported_weights_go_to_the_catalogue_path_and_are_recorded()
    {
        using var dir = new TempDir();
        var store = new ModelStore(dir.Path);
        var dest = store.ImportTarget("/somewhere/model_ir_se50.pth", "irse50");
        Assert.Equal(Path.Combine(dir.Path, "irse50", "model_ir_se50.safetensors"), dest);
        Directory.CreateDirectory(Path.GetDirectoryName(dest)!);
        File.WriteAllBytes(dest, [1, 2, 3, 4]);
        store.Record(dest, "imported from model_ir_se50.pth");
        var status = store.List().Single(s => s.Entry.Name == "irse50");
        Assert.True(status.Present);
        Assert.Equal(4, status.Size);
        // sha256 of bytes 01 02 03 04
        Assert.Equal("9f64a747e1b97f131fabb6b447296c9b6f0201e79fb3c5356e6c77e89b6a806a", status.Sha256);
        Assert.Equal(status.Sha256, store.ReadManifest()["irse50/model_ir_se50.safetensors"].Sha256);
        Assert.Equal(store.PathOf("irse50"), dest);
    }

    [Fact]
    public void Verify_rehashes_every_recorded_file()
    {
        using var dir = new TempDir();
        var store = new ModelStore(dir.Path);
        var a = Path.Combine(dir.Path, "a.bin");
        var b = Path.Combine(dir.Path, "sub", "b.bin");
        var c = Path.Combine(dir.Path, "c.bin");
        Directory.CreateDirectory(Path.GetDirectoryName(b)!);
        foreach (var f in new[] { a, b, c }) { File.WriteAllBytes(f, [1, 2, 3, 4]); store.Record(f, "test"); }
        Assert.All(store.Verify(), v => Assert.Equal(FileCheck.Ok, v.Result));

        File.WriteAllBytes(a, [1, 2, 3, 5]);   // same size, other content
        File.Delete(c);
        var results = store.Verify().ToDictionary(v => v.RelativePath, v => v.Result);
        Assert.Equal(FileCheck.Changed, results["a.bin"]);
        Assert.Equal(FileCheck.Ok, results["sub/b.bin"]);
        Assert.Equal(FileCheck.Missing, results["c.bin"]);
    }

    [Fact]
    public void Import_target_rejects_unknown_files_and_models_with_clear_messages()
    {
        var store = new ModelStore("/tmp/deid-store-never-written");
        Assert.Contains("550000.pt", Assert.Throws<ArgumentException>(() => store.ImportTarget("random.pt", "stylegan2")).Message);
        Assert.Contains("unknown model 'nope'", Assert.Throws<ArgumentException>(() => store.ImportTarget("random.pt", "nope")).Message);
    }

    [Fact]
    public void Fetch_without_npm_fails_with_a_clear_message()
    {
        using var dir = new TempDir();
        var ex = Assert.Throws<InvalidOperationException>(() => new ModelStore(dir.Path).Fetch(npm: "/nonexistent/npm"));
        Assert.Contains("npm", ex.Message);
        Assert.Contains(ModelStore.FaceApiPackage, ex.Message);
    }

    [Fact]
    public void Corrupt_manifest_is_reported()
    {
        using var dir = new TempDir();
        File.WriteAllText(Path.Combine(dir.Path, ModelStore.ManifestFile), "{ not json");
        Assert.Contains("manifest.json", Assert.Throws<InvalidDataException>(() => new ModelStore(dir.Path).ReadManifest()).Message);
    }

    [Fact]
    public void Repository_models_directory_is_populated_by_fetch()
    {
        var store = new ModelStore(TestPaths.Models);
        if (!File.Exists(Path.Combine(store.Root, ModelStore.ManifestFile)))
            Assert.Skip($"no manifest.json in {store.Root}; run `dotnet run --project src/Deid.Cli -- models fetch`");
        var manifest = store.ReadManifest();
        foreach (var rel in new[] { "face-api/face_recognition_model.bin", "face-api/face_landmark_68_model.bin", "faceplugin/fr_feature.onnx" })
        {
            var path = Path.Combine(store.Root, rel);
            Assert.True(File.Exists(path), $"{path} missing");
            Assert.Equal(manifest[rel].Sha256, ModelStore.Sha256Of(path));
        }
    }
}
