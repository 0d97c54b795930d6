using System.Buffers.Binary;
using System.Globalization;

namespace Deid.TestSupport.Fuzz;

/// <summary>One damaged input: which seed clip, what was done to it, and the bytes.</summary>
public sealed record FuzzCase(int Id, string Seed, string Kind, string Description, byte[] Data)
{
    public string FileName => $"fuzz-{Id:D4}-{Kind}{System.IO.Path.GetExtension(Seed)}";
    public override string ToString() => $"#{Id} {Kind} of {Seed}: {Description}";
}

/// <summary>One box of an ISO-BMFF (MP4) file: header at <see cref="Offset"/>, <see cref="Size"/> bytes in all.</summary>
public sealed record Mp4Box(string Type, long Offset, long Size, int HeaderSize, int Depth, int Parent);

/// <summary>
/// Seeded, reproducible damage to real clips: random byte flips, truncations at random offsets, swapped MP4 boxes,
/// zeroed ranges inside moov and mdat, and wrong sizes written into box headers. The same seed and seed files give the
/// same cases byte for byte (System.Random with a seed is deterministic, the seed clips are encoded bit-exactly).
/// </summary>
public static class FuzzCorpus
{
    public static readonly string[] Kinds = ["flip", "flip-moov", "truncate", "truncate-box", "swap-boxes", "zero-moov", "zero-mdat", "wrong-size"];

    private static readonly HashSet<string> Containers = ["moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "udta", "mvex", "moof", "traf"];

    /// <summary>
    /// Small seed clips cut from a shared talking-head clip (1 s, 160 px wide, h264 + AAC), encoded bit-exactly: an MP4
    /// with its index (moov) first, one with the index after the media (mdat), and a Matroska file.
    /// </summary>
    public static IReadOnlyList<string> MakeSeeds(string sharedClip, string dir, double seconds = 1.0)
    {
        Directory.CreateDirectory(dir);
        var t = seconds.ToString(CultureInfo.InvariantCulture);
        string[] common = ["-i", sharedClip, "-t", t, "-vf", "scale=160:-2", "-c:v", "libx264", "-preset", "ultrafast", "-threads", "1",
            "-c:a", "aac", "-b:a", "32k", "-ac", "1", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"];
        var faststart = Path.Combine(dir, "seed-faststart.mp4");
        var moovLast = Path.Combine(dir, "seed-moovlast.mp4");
        var mkv = Path.Combine(dir, "seed.mkv");
        if (!File.Exists(faststart)) Tool.Ffmpeg([.. common, "-movflags", "+faststart", faststart]);
        if (!File.Exists(moovLast)) Tool.Ffmpeg([.. common, moovLast]);
        if (!File.Exists(mkv)) Tool.Ffmpeg([.. common, mkv]);
        return [faststart, moovLast, mkv];
    }

    /// <summary>Cases <paramref name="first"/>..first+count-1 of the corpus for <paramref name="seed"/> (case i depends only on seed and i).</summary>
    public static IEnumerable<FuzzCase> Generate(int seed, IReadOnlyList<string> seedFiles, int count, int first = 0)
    {
        var originals = seedFiles.Select(File.ReadAllBytes).ToArray();
        for (var id = first; id < first + count; id++)
        {
            var rng = new Random(unchecked(seed * 1_000_003 + id));
            var s = rng.Next(seedFiles.Count);
            var isMp4 = seedFiles[s].EndsWith(".mp4", StringComparison.OrdinalIgnoreCase);
            var kind = Kinds[id % Kinds.Length];
            // Matroska has no MP4 boxes: its box kinds fall back to flips, truncations and zeroed ranges
            if (!isMp4 && kind is "flip-moov" or "truncate-box" or "swap-boxes" or "wrong-size" or "zero-moov" or "zero-mdat")
                kind = kind switch { "truncate-box" => "truncate", "zero-moov" or "zero-mdat" => "zero-range", _ => "flip" };
            var data = (byte[])originals[s].Clone();
            var description = Mutate(kind, ref data, rng);
            yield return new FuzzCase(id, Path.GetFileName(seedFiles[s]), kind, description, data);
        }
    }

    private static string Mutate(string kind, ref byte[] data, Random rng)
    {
        var boxes = kind is "flip" or "truncate" or "zero-range" ? [] : ParseBoxes(data);
        switch (kind)
        {
            case "flip":
            {
                var n = 1 + rng.Next(32);
                for (var i = 0; i < n; i++) data[rng.Next(data.Length)] ^= (byte)(1 << rng.Next(8));
                return $"{n} random bit flips";
            }
            case "flip-moov":
            {
                var moov = boxes.FirstOrDefault(b => b.Type == "moov");
                if (moov == null) return Mutate("flip", ref data, rng);
                var n = 1 + rng.Next(16);
                for (var i = 0; i < n; i++) data[moov.Offset + rng.NextInt64(moov.Size)] ^= (byte)(1 + rng.Next(255));
                return $"{n} random bytes changed inside moov";
            }
            case "truncate":
            {
                var len = data.Length;
                var at = 1 + rng.Next(len - 1);
                data = data[..at];
                return $"cut at byte {at} of {len}";
            }
            case "truncate-box":
            {
                var b = boxes[rng.Next(boxes.Count)];
                var at = (int)(rng.Next(2) == 0 ? b.Offset : Math.Min(data.Length - 1, b.Offset + b.Size - 1));
                if (at <= 0) at = 1;
                var len = data.Length;
                data = data[..at];
                return $"cut at byte {at} of {len} ({(at == b.Offset ? "start" : "end")} of {b.Type})";
            }
            case "swap-boxes":
            {
                var groups = boxes.Select((b, i) => (b, i)).GroupBy(x => x.b.Parent).Where(g => g.Count() >= 2).ToList();
                if (groups.Count == 0) return Mutate("flip", ref data, rng);
                var g = groups[rng.Next(groups.Count)].Select(x => x.b).OrderBy(b => b.Offset).ToList();
                var i = rng.Next(g.Count - 1);
                var j = i + 1 + rng.Next(g.Count - 1 - i);
                var (a, c) = (g[i], g[j]);
                var result = new List<byte>(data.Length);
                result.AddRange(data[..(int)a.Offset]);
                result.AddRange(data[(int)c.Offset..(int)(c.Offset + c.Size)]);
                result.AddRange(data[(int)(a.Offset + a.Size)..(int)c.Offset]);
                result.AddRange(data[(int)a.Offset..(int)(a.Offset + a.Size)]);
                result.AddRange(data[(int)(c.Offset + c.Size)..]);
                data = result.ToArray();
                return $"swapped boxes {a.Type}@{a.Offset} and {c.Type}@{c.Offset}";
            }
            case "zero-moov":
            case "zero-mdat":
            {
                var type = kind[5..];
                var box = boxes.Where(b => b.Type == type).OrderByDescending(b => b.Size).FirstOrDefault();
                if (box == null || box.Size <= box.HeaderSize) return Mutate("zero-range", ref data, rng);
                var payload = box.Size - box.HeaderSize;
                var len = 1 + rng.NextInt64(Math.Min(payload, type == "moov" ? 512 : Math.Max(64, payload / 4)));
                var start = box.Offset + box.HeaderSize + rng.NextInt64(payload - len + 1);
                Array.Clear(data, (int)start, (int)len);
                return $"zeroed {len} bytes at {start} inside {type}";
            }
            case "zero-range":
            {
                var len = 1 + rng.Next(Math.Min(4096, data.Length / 4));
                var start = rng.Next(data.Length - len);
                Array.Clear(data, start, len);
                return $"zeroed {len} bytes at {start}";
            }
            case "wrong-size":
            {
                var b = boxes[rng.Next(boxes.Count)];
                var size32 = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan((int)b.Offset, 4));
                uint wrong = rng.Next(8) switch
                {
                    0 => 0,
                    1 => 1,
                    2 => 7,
                    3 => 0xFFFFFFFF,
                    4 => size32 * 2 + 8,
                    5 => (uint)rng.Next(),
                    6 => size32 - (uint)(1 + rng.Next(16)),
                    _ => size32 + (uint)(1 + rng.Next(16)),
                };
                BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan((int)b.Offset, 4), wrong);
                return $"size of {b.Type}@{b.Offset} set to {wrong} (was {size32})";
            }
            default:
                throw new ArgumentException("unknown fuzz kind " + kind);
        }
    }

    /// <summary>Boxes of an MP4 file, containers (moov, trak, mdia, minf, stbl, …) descended into; parsing stops at anything malformed.</summary>
    public static List<Mp4Box> ParseBoxes(byte[] data)
    {
        var list = new List<Mp4Box>();
        void Walk(long start, long end, int depth, int parent)
        {
            var pos = start;
            while (pos + 8 <= end)
            {
                long size = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan((int)pos, 4));
                var type = System.Text.Encoding.ASCII.GetString(data, (int)pos + 4, 4);
                var header = 8;
                if (size == 1)
                {
                    if (pos + 16 > end) return;
                    size = (long)BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan((int)pos + 8, 8));
                    header = 16;
                }
                else if (size == 0) size = end - pos;
                if (size < header || pos + size > end) return;
                list.Add(new Mp4Box(type, pos, size, header, depth, parent));
                var me = list.Count - 1;
                if (Containers.Contains(type)) Walk(pos + header, pos + size, depth + 1, me);
                pos += size;
            }
        }
        Walk(0, data.Length, 0, -1);
        return list;
    }
}
