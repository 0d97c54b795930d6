using System.Diagnostics;
using System.Text.Json;
using Deid.TestSupport;

namespace Deid.Cli.Tests;

/// <summary>Short low-resolution clips cut from the shared ones (once per test process).</summary>
public static class BatchTestSupport
{
    private static readonly Lazy<string> ClipDir = new(() =>
    {
        var dir = Directory.CreateTempSubdirectory("deid-batch-clips-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        Parallel.ForEach(new[] { ("talk_small.mp4", "a.mp4"), ("talk_d3.mp4", "b.mp4"), ("wide_s13.mp4", "c.mp4") }, x =>
            Tool.Ffmpeg("-i", TestPaths.Video(x.Item1), "-t", "1", "-vf", "scale=160:-2", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-c:a", "aac", Path.Combine(dir, x.Item2)));
        return dir;
    });

    /// <summary>One of three 1 s, 160 px wide clips (a, b, c; a has a face HOG finds at that size).</summary>
    public static string Clip(string name) => Path.Combine(ClipDir.Value, name + ".mp4");

    private static readonly Lazy<string> LongDir = new(() =>
    {
        var dir = Path.Combine(ClipDir.Value, "2s");
        Directory.CreateDirectory(dir);
        Parallel.ForEach(new[] { "a", "b", "c" }, n =>
            Tool.Ffmpeg("-stream_loop", "1", "-i", Clip(n), "-t", "2", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-c:a", "aac", Path.Combine(dir, n + ".mp4")));
        return dir;
    });

    /// <summary>The same clips, 2 s long (something to interrupt).</summary>
    public static string LongClip(string name) => Path.Combine(LongDir.Value, name + ".mp4");


    public static List<JsonElement> Manifest(string path) =>
        File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    public static List<JsonElement> ClipLines(string manifest) => Manifest(manifest).Where(r => r.GetProperty("type").GetString() == "clip").ToList();

    /// <summary>The latest status line per input.</summary>
    public static Dictionary<string, JsonElement> Latest(string manifest)
    {
        var d = new Dictionary<string, JsonElement>();
        foreach (var r in ClipLines(manifest)) d[r.GetProperty("input").GetString()!] = r;
        return d;
    }

    /// <summary>One "deid: error:" line on stderr containing <paramref name="expected"/>, and the exit code.</summary>
    public static void AssertOneError((int Code, string StdOut, string StdErr) r, int code, string expected)
    {
        var lines = r.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(r.Code == code, $"exit {r.Code}, expected {code}: {r.StdErr}");
        Assert.Single(lines);
        Assert.StartsWith("deid: error: ", lines[0]);
        Assert.Contains(expected, lines[0], StringComparison.OrdinalIgnoreCase);
    }

    public static string[] TempFiles(string dir) =>
        Directory.GetFiles(dir, "*", SearchOption.AllDirectories).Where(f => Path.GetFileName(f).Contains(".deid-tmp-", StringComparison.Ordinal)).ToArray();
}
