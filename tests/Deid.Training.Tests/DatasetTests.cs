using Deid.Models.Weights;
using Deid.TestSupport;
using Xunit;
using Generator = Deid.Models.StyleGAN2.Generator;

namespace Deid.Training.Tests;

public class DatasetTests
{
    private static string[] Files(string dir) =>
        Directory.GetFiles(dir, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(dir, f)).Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public void Generation_writes_png_and_w_shards_and_a_rerun_continues_without_duplicating_anything()
    {
        using var tmp = new TempDir();
        using var g = Generator.FromSafeTensors(TinyData.GeneratorPath);
        var full = tmp.File("full");
        DatasetGenerator.Generate(g, TinyData.GeneratorPath, full, count: 20, seed: 5, shardSize: 8);
        Assert.Equal(20, Directory.GetFiles(Path.Combine(full, "images"), "*.png").Length);
        Assert.Equal(3, Directory.GetFiles(Path.Combine(full, "w")).Length);

        // An interrupted run: the first shard finished, the second half-written (no shard file yet), then a rerun with a larger count.
        var part = tmp.File("part");
        DatasetGenerator.Generate(g, TinyData.GeneratorPath, part, count: 8, seed: 5, shardSize: 8);
        Directory.CreateDirectory(Path.Combine(part, "images"));
        File.Copy(DatasetInfo.ImagePath(full, 9), DatasetInfo.ImagePath(part, 9));
        DatasetGenerator.Generate(g, TinyData.GeneratorPath, part, count: 20, seed: 5, shardSize: 8);
        Assert.Equal(Files(full), Files(part));
        foreach (var f in Files(full).Where(f => !f.EndsWith("dataset.json")))
            Assert.True(File.ReadAllBytes(Path.Combine(full, f)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(part, f))), f);

        var ds = ImageLatentDataset.Open(part);
        Assert.Equal(Enumerable.Range(0, 20), ds.Indices);
        using var shard = SafeTensors.Open(DatasetInfo.ShardPath(part, 1));
        using var w = shard.Read("w");
        Assert.Equal(ds.W(8).ToArray(), w[0].data<float>().ToArray());
        // The recorded w draws the recorded image.
        using var img = g.Synthesize(w[0].unsqueeze(0)).clamp(-1, 1);
        var stored = ds.ReadImage(8);
        var drawn = img.flatten().data<float>().ToArray();
        Assert.True(stored.Zip(drawn).Max(p => Math.Abs(p.First - p.Second)) <= 1.0 / 127.5 + 1e-4);
    }

    [Fact]
    public void Rerun_with_other_settings_is_refused_and_names_them()
    {
        using var tmp = new TempDir();
        using var g = Generator.FromSafeTensors(TinyData.GeneratorPath);
        var dir = tmp.File("d");
        DatasetGenerator.Generate(g, TinyData.GeneratorPath, dir, count: 4, seed: 1, shardSize: 4);
        var e = Assert.Throws<DatasetException>(() => DatasetGenerator.Generate(g, TinyData.GeneratorPath, dir, count: 4, seed: 2, truncation: 0.7, shardSize: 4));
        Assert.Contains("seed (1 → 2)", e.Message);
        Assert.Contains("truncation", e.Message);
        Assert.Throws<DatasetException>(() => DatasetGenerator.Generate(g, TinyData.GeneratorPath, dir, count: 2, seed: 1, shardSize: 4));
        File.WriteAllText(tmp.File("other.txt"), "x");
        Assert.Contains("not empty", Assert.Throws<DatasetException>(() => DatasetGenerator.Generate(g, TinyData.GeneratorPath, tmp.Path, 4)).Message);
    }

    [Fact]
    public void Opening_a_bad_dataset_gives_one_line_saying_what_is_wrong()
    {
        using var tmp = new TempDir();
        Assert.Contains("not found", Assert.Throws<DatasetException>(() => ImageLatentDataset.Open(tmp.File("nope"))).Message);
        Directory.CreateDirectory(tmp.File("empty"));
        Assert.Contains("is empty", Assert.Throws<DatasetException>(() => ImageLatentDataset.Open(tmp.File("empty"))).Message);
        using var g = Generator.FromSafeTensors(TinyData.GeneratorPath);
        var dir = tmp.File("d");
        DatasetGenerator.Generate(g, TinyData.GeneratorPath, dir, count: 4, seed: 1, shardSize: 4);
        using (var small = OpenCvSharp.Mat.Zeros(16, 16, OpenCvSharp.MatType.CV_8UC3).ToMat()) OpenCvSharp.Cv2.ImWrite(DatasetInfo.ImagePath(dir, 2), small);
        var e = Assert.Throws<DatasetException>(() => ImageLatentDataset.Open(dir));
        Assert.Contains("mixed sizes", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        File.Delete(DatasetInfo.ImagePath(dir, 2));
        Assert.Contains("missing", Assert.Throws<DatasetException>(() => ImageLatentDataset.Open(dir)).Message);
    }

    [Fact]
    public void Loader_streams_every_training_image_once_per_epoch_in_a_seeded_order_and_resumes_at_a_position()
    {
        using var tmp = new TempDir();
        using var g = Generator.FromSafeTensors(TinyData.GeneratorPath);
        var dir = tmp.File("d");
        DatasetGenerator.Generate(g, TinyData.GeneratorPath, dir, count: 10, seed: 1, shardSize: 4);
        var ds = ImageLatentDataset.Open(dir);
        var split = ds.Indices.Take(7).ToList();
        var epoch0 = Enumerable.Range(0, 7).Select(p => PairLoader.IndexAt(split, 3, p)).ToList();
        var epoch1 = Enumerable.Range(7, 7).Select(p => PairLoader.IndexAt(split, 3, p)).ToList();
        Assert.Equal(split, epoch0.Order());
        Assert.Equal(split, epoch1.Order());
        Assert.NotEqual(epoch0, epoch1);

        using var a = new PairLoader(ds, split, 3, prefetch: 3);
        var first = Enumerable.Range(0, 4).Select(_ => a.Next(3)).ToList();
        using var b = new PairLoader(ds, split, 3, startPosition: 6, prefetch: 3);
        var (imgB, wB) = b.Next(3);
        Assert.True(first[2].Images.eq(imgB).all().item<bool>());
        Assert.True(first[2].W.eq(wB).all().item<bool>());
        Assert.Equal(ds.W(epoch0[6]).ToArray(), wB[0].data<float>().ToArray());
        Assert.Equal(12, a.Position);
    }
}
