using System.Text.Json;
using System.Text.Json.Serialization;
using Deid.Models;
using Deid.Models.StyleGAN2;
using Generator = Deid.Models.StyleGAN2.Generator;
using Deid.Models.Weights;
using OpenCvSharp;
using static TorchSharp.torch;

namespace Deid.Training;

/// <summary>A dataset folder that cannot be used or continued (one line, for the CLI).</summary>
public sealed class DatasetException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// <c>dataset.json</c>: how a dataset folder was made. Images are <c>images/NNNNNNNN.png</c> (index i, 8 digits), the
/// w of images [k·S, k·S + n) are tensor <c>w</c> [n, style_dim] of <c>w/shard-KKKKK.safetensors</c> (S = shard_size).
/// A shard file is written after all its images, so its presence marks those images complete.
/// </summary>
public sealed record DatasetInfo
{
    public const string FileName = "dataset.json";
    public const string FormatName = "deid-dataset-1";

    public string Format { get; init; } = FormatName;
    public string Generator { get; init; } = "";
    public string GeneratorSha256 { get; init; } = "";
    public int Size { get; init; }
    public int StyleDim { get; init; }
    public int Count { get; init; }
    public double Truncation { get; init; } = 1;
    public long Seed { get; init; }
    public int ShardSize { get; init; } = 1000;

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true,
    };

    public int ShardCount => (Count + ShardSize - 1) / ShardSize;
    public int RowsInShard(int k) => Math.Min(ShardSize, Count - k * ShardSize);

    public static string ImagePath(string dir, int index) => Path.Combine(dir, "images", $"{index:D8}.png");
    public static string ShardPath(string dir, int shard) => Path.Combine(dir, "w", $"shard-{shard:D5}.safetensors");

    public static DatasetInfo? TryRead(string dir)
    {
        var path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<DatasetInfo>(File.ReadAllText(path), Json); }
        catch (JsonException e) { throw new DatasetException($"{path} is not valid JSON ({e.Message.Split('\n')[0]})", e); }
    }

    public void Write(string dir) => AtomicFile.WriteAllText(Path.Combine(dir, FileName), JsonSerializer.Serialize(this, Json));
}

/// <summary>
/// <c>deid generate-dataset</c>: z ~ N(0, I) → w = G's mapping (optionally truncated toward the mean w) → G(w), image
/// and w recorded (§3.2; the w are D_W's real samples). Deterministic per shard (its z come from a generator seeded
/// with (seed, shard)), so a rerun continues exactly where a previous one stopped and never duplicates an image.
/// </summary>
public static class DatasetGenerator
{
    public const int DefaultShardSize = 1000;

    /// <param name="progress">Called with (images done, total) after every batch.</param>
    public static void Generate(Generator g, string generatorPath, string dir, int count, double truncation = 1, long seed = 0,
        int shardSize = DefaultShardSize, int batchSize = 8, Action<int, int>? progress = null, CancellationToken ct = default)
    {
        if (count < 1) throw new DatasetException($"--count must be at least 1, got {count}");
        if (truncation <= 0 || truncation > 1 || !double.IsFinite(truncation)) throw new DatasetException($"--truncation must be in (0,1], got {truncation}");
        if (shardSize < 1) throw new DatasetException($"shard size must be at least 1, got {shardSize}");
        var info = new DatasetInfo
        {
            Generator = Path.GetFullPath(generatorPath), GeneratorSha256 = SafeTensors.Sha256(generatorPath),
            Size = g.Size, StyleDim = g.StyleDim, Count = count, Truncation = truncation, Seed = seed, ShardSize = shardSize,
        };
        if (File.Exists(dir)) throw new DatasetException($"{dir} is a file, not a folder");
        var existing = DatasetInfo.TryRead(dir);
        if (existing is null && Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
            throw new DatasetException($"{dir} is not empty and holds no {DatasetInfo.FileName}: choose a new or empty folder");
        if (existing is not null)
        {
            var diffs = new List<string>();
            if (existing.Format != info.Format) diffs.Add($"format ({existing.Format})");
            if (existing.GeneratorSha256 != info.GeneratorSha256) diffs.Add($"generator ({existing.Generator}, another file)");
            if (existing.Truncation != info.Truncation) diffs.Add($"truncation ({existing.Truncation} → {truncation})");
            if (existing.Seed != info.Seed) diffs.Add($"seed ({existing.Seed} → {seed})");
            if (existing.ShardSize != info.ShardSize) diffs.Add($"shard size ({existing.ShardSize} → {shardSize})");
            if (diffs.Count > 0)
                throw new DatasetException($"{dir} holds a dataset made with other settings ({string.Join(", ", diffs)}): use those settings to continue it, or a new folder");
            if (count < existing.Count) throw new DatasetException($"{dir} already holds a dataset of {existing.Count} images; --count cannot shrink it to {count}");
        }
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        Directory.CreateDirectory(Path.Combine(dir, "w"));
        info.Write(dir);

        var dev = g.parameters().First().device;
        using var _ = no_grad();
        g.eval();
        Tensor? mean = truncation < 1 ? g.MeanLatent() : null;
        int done = 0;
        for (int k = 0; k < info.ShardCount; k++)
        {
            ct.ThrowIfCancellationRequested();
            int rows = info.RowsInShard(k);
            if (ShardRows(dir, k) == rows) { done += rows; progress?.Invoke(done, count); continue; }
            using var scope = NewDisposeScope();
            // The whole shard's z and w at once (the mapping sees the same batch on every rerun: identical w).
            var gen = new TorchSharp.torch.Generator((ulong)unchecked(seed * 1_000_003L + k));
            var z = randn(new long[] { shardSize, g.StyleDim }, generator: gen).to(dev);
            var w = g.Map(z);
            if (mean is not null) w = mean + truncation * (w - mean);
            w = w.slice(0, 0, rows, 1);
            for (int b = 0; b < rows; b += batchSize)
            {
                ct.ThrowIfCancellationRequested();
                int n = Math.Min(batchSize, rows - b);
                using var inner = NewDisposeScope();
                var img = g.Synthesize(w.slice(0, b, b + n, 1)).clamp(-1, 1);
                var bgr = CropTensors.ToBgrHwc(img);
                for (int i = 0; i < n; i++) ImageIo.WritePng(DatasetInfo.ImagePath(dir, k * shardSize + b + i), bgr[i]);
                done += n;
                progress?.Invoke(done, count);
            }
            SafeTensors.Save(DatasetInfo.ShardPath(dir, k), new[] { KeyValuePair.Create("w", w.cpu().contiguous()) },
                new Dictionary<string, string> { ["first_index"] = (k * shardSize).ToString(), ["format"] = DatasetInfo.FormatName });
        }
    }

    /// <summary>Rows of a complete shard file, or -1 when it is missing or unreadable.</summary>
    internal static long ShardRows(string dir, int k)
    {
        var path = DatasetInfo.ShardPath(dir, k);
        if (!File.Exists(path)) return -1;
        try { using var f = SafeTensors.Open(path); return f.Contains("w") ? f.Info("w").Shape[0] : -1; }
        catch (Exception e) when (e is WeightsException or IOException or InvalidDataException) { return -1; }
    }
}

/// <summary>
/// A generated dataset opened for training: the w of every complete shard in memory, images read on demand. Checks
/// on opening (one-line errors): folder missing, not a dataset, empty, an image missing, images of mixed sizes.
/// </summary>
public sealed class ImageLatentDataset
{
    private readonly float[] _w;

    public string Directory { get; }
    public DatasetInfo Info { get; }
    /// <summary>Dataset indices usable for training and validation (those of complete shards), ascending.</summary>
    public IReadOnlyList<int> Indices { get; }
    public int Size => Info.Size;
    public int StyleDim => Info.StyleDim;
    private readonly Dictionary<int, int> _row = new();

    private ImageLatentDataset(string dir, DatasetInfo info, List<int> indices, float[] w)
    {
        Directory = dir; Info = info; Indices = indices; _w = w;
        for (int i = 0; i < indices.Count; i++) _row[indices[i]] = i;
    }

    public static ImageLatentDataset Open(string dir)
    {
        if (!System.IO.Directory.Exists(dir)) throw new DatasetException($"dataset folder not found: {dir}");
        var info = DatasetInfo.TryRead(dir)
                   ?? throw new DatasetException(System.IO.Directory.EnumerateFileSystemEntries(dir).Any()
                       ? $"{dir} is not a deid dataset (no {DatasetInfo.FileName}; make one with `deid generate-dataset`)"
                       : $"dataset folder {dir} is empty (make one with `deid generate-dataset`)");
        if (info.Format != DatasetInfo.FormatName) throw new DatasetException($"{dir}: unknown dataset format '{info.Format}'");
        var indices = new List<int>();
        var w = new List<float>();
        for (int k = 0; k < info.ShardCount; k++)
        {
            int rows = info.RowsInShard(k);
            if (DatasetGenerator.ShardRows(dir, k) != rows) continue;
            using var f = SafeTensors.Open(DatasetInfo.ShardPath(dir, k));
            using var t = f.Read("w", ScalarType.Float32);
            if (t.dim() != 2 || t.shape[1] != info.StyleDim) throw new DatasetException($"{f.Path}: w has shape [{string.Join(",", t.shape)}], expected [{rows},{info.StyleDim}]");
            w.AddRange(t.data<float>().ToArray());
            for (int i = 0; i < rows; i++) indices.Add(k * info.ShardSize + i);
        }
        if (indices.Count == 0) throw new DatasetException($"dataset {dir} has no complete shard yet (rerun `deid generate-dataset` to finish it)");
        foreach (var i in indices)
        {
            var p = DatasetInfo.ImagePath(dir, i);
            if (!File.Exists(p)) throw new DatasetException($"dataset {dir}: image {p} is missing");
            var (wd, ht) = ImageIo.PngSize(p);
            if (wd != info.Size || ht != info.Size)
                throw new DatasetException($"dataset {dir}: images have mixed sizes ({Path.GetFileName(p)} is {wd}x{ht}, the dataset's are {info.Size}x{info.Size})");
        }
        return new ImageLatentDataset(dir, info, indices, w.ToArray());
    }

    /// <summary>The w of dataset index <paramref name="index"/>.</summary>
    public ReadOnlySpan<float> W(int index) => _w.AsSpan(_row[index] * StyleDim, StyleDim);

    /// <summary>RGB CHW floats in [-1,1] of one image.</summary>
    public float[] ReadImage(int index) => ImageIo.ReadRgbMinusOneToOne(DatasetInfo.ImagePath(Directory, index), Size);

    /// <summary>A batch <c>[n,3,S,S]</c> of the given indices (read synchronously; the loader prefetches instead).</summary>
    public Tensor Images(IReadOnlyList<int> indices, Device? device = null)
    {
        var data = new float[indices.Count * 3 * Size * Size];
        for (int i = 0; i < indices.Count; i++) ReadImage(indices[i]).CopyTo(data, i * 3 * Size * Size);
        var t = tensor(data, new long[] { indices.Count, 3, Size, Size });
        if (device is null || device.type == TorchSharp.DeviceType.CPU) return t;
        using (t) return t.to(device);
    }
}

/// <summary>PNG and file helpers (OpenCV), every write atomic.</summary>
public static class ImageIo
{
    /// <summary>Writes <c>[H,W,3]</c> uint8 BGR as PNG (temp + rename).</summary>
    public static void WritePng(string path, Tensor bgrHwc)
    {
        using var c = bgrHwc.contiguous().cpu();
        int h = (int)c.shape[0], w = (int)c.shape[1];
        var bytes = c.data<byte>().ToArray();
        using var mat = Mat.FromPixelData(h, w, MatType.CV_8UC3, bytes);
        Cv2.ImEncode(".png", mat, out var png);
        AtomicFile.WriteAllBytes(path, png);
    }

    public static (int Width, int Height) PngSize(string path)
    {
        var head = new byte[24];
        using (var fs = File.OpenRead(path))
            if (fs.Read(head) != 24) throw new DatasetException($"{path} is not a PNG image (truncated)");
        if (head[1] != (byte)'P' || head[2] != (byte)'N' || head[3] != (byte)'G') throw new DatasetException($"{path} is not a PNG image");
        int W(int o) => (head[o] << 24) | (head[o + 1] << 16) | (head[o + 2] << 8) | head[o + 3];
        return (W(16), W(20));
    }

    public static float[] ReadRgbMinusOneToOne(string path, int size)
    {
        using var m = Cv2.ImRead(path, ImreadModes.Color);
        if (m.Empty()) throw new DatasetException($"cannot read image {path}");
        if (m.Rows != size || m.Cols != size) throw new DatasetException($"{path} is {m.Cols}x{m.Rows}, the dataset's images are {size}x{size}");
        var px = new byte[size * size * 3];
        System.Runtime.InteropServices.Marshal.Copy(m.Data, px, 0, px.Length);
        int plane = size * size;
        var r = new float[3 * plane];
        for (int o = 0; o < plane; o++)
        {
            r[o] = px[3 * o + 2] / 127.5f - 1f;
            r[plane + o] = px[3 * o + 1] / 127.5f - 1f;
            r[2 * plane + o] = px[3 * o] / 127.5f - 1f;
        }
        return r;
    }
}

/// <summary>Writes that appear complete or not at all: a temp file beside the target, then a rename.</summary>
public static class AtomicFile
{
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var tmp = TempFor(path);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write)) fs.Write(bytes);
            File.Move(tmp, path, overwrite: true);
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }

    public static void WriteAllText(string path, string text) => WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>Streams into a temp file and renames it into place when <paramref name="write"/> returns.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var tmp = TempFor(path);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write)) write(fs);
            File.Move(tmp, path, overwrite: true);
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }

    private static string TempFor(string path)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        System.IO.Directory.CreateDirectory(dir);
        return Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
    }
}
