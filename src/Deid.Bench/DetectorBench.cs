using System.Globalization;
using Deid.Pipeline;

namespace Deid.Bench;

/// <summary>
/// The whole blur pipeline with each face detector on each shared clip, every run in a fresh process so its peak
/// RSS is its own: frames/s, frames in which the detector found a face (the rest are followed from the last
/// landmarks or blurred), and peak RSS. The README points here instead of quoting these numbers.
/// DEID_BENCH_CLIPS (comma-separated file names) limits the clips.
/// </summary>
public static class DetectorBench
{
    private static readonly string[] DefaultClips =
    [
        "talk_small.mp4", "talk_d3.mp4", "talk_d0_noaudio.mp4", "talk_d13_portrait_noaudio.mp4", "wide_s13.mp4", "talk_1080p.mp4",
    ];

    private const string ChildMarker = "DETECTOR_RUN ";

    public static void Run(BenchResults r)
    {
        var clips = Environment.GetEnvironmentVariable("DEID_BENCH_CLIPS") is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : DefaultClips;
        foreach (var clip in clips)
        {
            var path = Path.Combine(Suites.Shared, "media", "videos", clip);
            if (!File.Exists(path)) { Console.Error.WriteLine($"skip {clip}: not found at {path}"); continue; }
            foreach (var detector in new[] { DetectorKind.Hog, DetectorKind.Ssd, DetectorKind.Both })
            {
                var name = detector.ToString().ToLowerInvariant();
                using var tmp = new BenchTemp();
                var (code, stdout, stderr) = PipelineBench.RunTool(Environment.ProcessPath!,
                    [.. SelfArgs(), "--child-detector", path, tmp.File("out.mp4"), name]);
                var line = stdout.Split('\n').FirstOrDefault(l => l.StartsWith(ChildMarker, StringComparison.Ordinal));
                if (line is null) { Console.Error.WriteLine($"skip {clip} {name}: run failed ({code}): {stderr.Trim()}"); continue; }
                var v = line[ChildMarker.Length..].Split(' ').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
                var (fps, frames, found, rss) = (v[0], v[1], v[2], v[3]);
                var suite = "detectors:" + clip;
                var extra = new Dictionary<string, object> { ["detector"] = name, ["frames"] = (long)frames };
                r.Add(new(suite, $"{name}: whole pipeline (blur, {Environment.ProcessorCount} cores)", fps, "fps", extra));
                r.Add(new(suite, $"{name}: frames with a face found", found, $"of {frames:0} frames", extra));
                r.Add(new(suite, $"{name}: peak RSS", rss, "MiB", extra));
            }
        }
    }

    // The bench runs as an apphost or as `dotnet Deid.Bench.dll`; a child is started the same way.
    private static string[] SelfArgs() =>
        Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? [typeof(DetectorBench).Assembly.Location] : [];

    /// <summary>Entry for `Deid.Bench --child-detector IN OUT hog|ssd|both`: one pipeline run, one result line.</summary>
    public static int Child(string input, string output, string detector)
    {
        var kind = FaceFinderFactory.Parse(detector);
        // As the CLI does: a torch detector runs with the tensor allocator setting.
        if (kind != DetectorKind.Hog) Deid.Media.NativeMemory.TuneForTensors();
        var report = Anonymizer.RunAsync(input, output, new AnonymizeOptions { Mode = AnonymizeMode.Blur, Detector = kind }).GetAwaiter().GetResult();
        var found = report.FrameRecords.Count(f => f.Faces.Any(x => x.Handling == FaceHandling.Replaced));
        var rss = (Suites.PeakRssKb() ?? Environment.WorkingSet / 1024) / 1024.0;
        Console.WriteLine(ChildMarker + string.Join(' ', new[] { report.Fps, report.Frames, found, rss }.Select(x => x.ToString(CultureInfo.InvariantCulture))));
        return 0;
    }
}
