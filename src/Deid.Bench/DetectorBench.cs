using System.Diagnostics;
using System.Globalization;
using Deid.Media;
using Deid.Models.FaceApi;
using Deid.Pipeline;
using OpenCvSharp;
using TorchSharp;

namespace Deid.Bench;

/// <summary>
/// The whole blur pipeline with each face detector on each shared clip, every run in a fresh process so its peak
/// RSS is its own: frames/s, frames in which the detector found a face (the rest are followed from the last
/// landmarks or blurred), CPU time per frame (the process and its ffmpeg children, user + sys: wall-clock rates
/// on a shared machine say little) and peak RSS. Per clip also the SSD search alone, in its own process: CPU ms
/// per frame, and its coverage against the path before the search was batched (each region converted and run as
/// an image of its own, as SsdMobilenetv1.Detect is given it). The README points here instead of quoting these
/// numbers. DEID_BENCH_CLIPS (comma-separated file names) limits the clips.
/// </summary>
public static class DetectorBench
{
    private static readonly string[] DefaultClips =
    [
        "talk_small.mp4", "talk_d3.mp4", "talk_d0_noaudio.mp4", "talk_d13_portrait_noaudio.mp4", "wide_s13.mp4", "talk_1080p.mp4",
    ];

    private const string ChildMarker = "DETECTOR_RUN ";
    private const string SsdMarker = "SSD_CPU ";

    /// <summary>Frames the SSD-alone rows search (the first of the clip; the first one again as warm-up).</summary>
    private const int SsdFrames = 30;

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
                var (fps, frames, found, rss, cpuMs) = (v[0], v[1], v[2], v[3], v[4]);
                var suite = "detectors:" + clip;
                var extra = new Dictionary<string, object> { ["detector"] = name, ["frames"] = (long)frames };
                r.Add(new(suite, $"{name}: whole pipeline (blur, {Environment.ProcessorCount} cores)", fps, "fps", extra));
                r.Add(new(suite, $"{name}: frames with a face found", found, $"of {frames:0} frames", extra));
                r.Add(new(suite, $"{name}: CPU per frame (process + ffmpeg, user+sys)", cpuMs, "ms", extra));
                r.Add(new(suite, $"{name}: peak RSS", rss, "MiB", extra));
            }
            SsdAlone(r, clip, path);
        }
    }

    private static void SsdAlone(BenchResults r, string clip, string path)
    {
        var (code, stdout, stderr) = PipelineBench.RunTool(Environment.ProcessPath!, [.. SelfArgs(), "--child-ssd-cpu", path]);
        var line = stdout.Split('\n').FirstOrDefault(l => l.StartsWith(SsdMarker, StringComparison.Ordinal));
        if (line is null) { Console.Error.WriteLine($"skip {clip} ssd alone: run failed ({code}): {stderr.Trim()}"); return; }
        var v = line[SsdMarker.Length..].Split(' ').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        var (cpuMs, frames, found, oldFound, same, oldCpuMs, threads) = (v[0], v[1], v[2], v[3], v[4], v[5], (int)v[6]);
        var suite = "detectors:" + clip;
        var extra = new Dictionary<string, object> { ["detector"] = "ssd", ["frames"] = (long)frames, ["torch_threads"] = threads };
        r.Add(new(suite, $"ssd: search alone, CPU per frame ({threads} torch threads)", cpuMs, "ms", extra));
        r.Add(new(suite, "ssd: search alone, CPU per frame, per-region path", oldCpuMs, "ms", extra));
        r.Add(new(suite, "ssd: search alone, frames with a face", found, $"of {frames:0} frames", extra));
        r.Add(new(suite, "ssd: search alone, frames with a face, per-region path", oldFound, $"of {frames:0} frames (target: <= the row above)", extra));
        r.Add(new(suite, "ssd: search alone, frames whose finds equal the per-region path's", same, $"of {frames:0} frames", extra));
    }

    /// <summary>
    /// Entry for `Deid.Bench --child-ssd-cpu IN`: the SSD search (SsdFaceFinder.FindRaw) on the first frames, then
    /// the per-region path on the same frames; CPU time of this process over each.
    /// </summary>
    public static int ChildSsdCpu(string input)
    {
        Deid.Media.NativeMemory.TuneForTensors();
        var frames = new List<VideoFrame>();
        using (var reader = new VideoReader(input))
            foreach (var f in reader.ReadFrames()) { frames.Add(f); if (frames.Count == SsdFrames) break; }
        try
        {
            using var ssd = FaceFinderFactory.LoadSsd(null, "cpu");
            using var finder = new SsdFaceFinder(ssd, new DeviceExecutor());
            finder.FindRaw(frames[0].Image);
            var cpu = 1000 * CpuClock.OwnSeconds();
            var finds = frames.Select(f => finder.FindRaw(f.Image)).ToList();
            var cpuMs = (1000 * CpuClock.OwnSeconds() - cpu) / frames.Count;
            cpu = 1000 * CpuClock.OwnSeconds();
            var old = frames.Select(f => PerRegion(ssd, f.Image)).ToList();
            var oldCpuMs = (1000 * CpuClock.OwnSeconds() - cpu) / frames.Count;
            var same = finds.Zip(old).Count(p => p.First.Count == p.Second.Count
                && p.First.Zip(p.Second).All(q => Math.Abs(q.First.X - q.Second.X) < 1 && Math.Abs(q.First.Y - q.Second.Y) < 1
                    && Math.Abs(q.First.Width - q.Second.Width) < 1 && Math.Abs(q.First.Score - q.Second.Score) < 0.01f));
            double[] v = [cpuMs, frames.Count, finds.Count(x => x.Count > 0), old.Count(x => x.Count > 0), same, oldCpuMs, torch.get_num_threads()];
            Console.WriteLine(SsdMarker + string.Join(' ', v.Select(x => x.ToString(CultureInfo.InvariantCulture))));
            return 0;
        }
        finally { foreach (var f in frames) f.Dispose(); }
    }

    /// <summary>The search as it was before it was batched: each region shrunk, copied out and run on its own.</summary>
    private static List<SsdFace> PerRegion(SsdMobilenetv1 net, Mat bgr)
    {
        var regions = SsdFaceFinder.Regions(bgr.Width, bgr.Height);
        var perRegion = new List<IReadOnlyList<SsdFace>>();
        foreach (var region in regions)
        {
            using var view = new Mat(bgr, region);
            var scale = Math.Min(1.0, (double)SsdMobilenetv1.InputSize / Math.Max(view.Width, view.Height));
            using var small = new Mat();
            if (scale < 1) Cv2.Resize(view, small, new Size(Math.Max(1, (int)Math.Round(view.Width * scale)), Math.Max(1, (int)Math.Round(view.Height * scale))), 0, 0, InterpolationFlags.Area);
            else view.CopyTo(small);
            using var rgb = small.CvtColor(ColorConversionCodes.BGR2RGB);
            var bytes = new byte[rgb.Width * rgb.Height * 3];
            System.Runtime.InteropServices.Marshal.Copy(rgb.Data, bytes, 0, bytes.Length);
            using var scope = torch.NewDisposeScope();
            var t = torch.tensor(bytes, new long[] { 1, rgb.Height, rgb.Width, 3 }, torch.ScalarType.Byte).permute(0, 3, 1, 2);
            double sx = (double)view.Width / rgb.Width, sy = (double)view.Height / rgb.Height;
            perRegion.Add(net.Detect(t)[0].Select(f => new SsdFace((float)(f.X * sx), (float)(f.Y * sy), (float)(f.Width * sx), (float)(f.Height * sy), f.Score)).ToList());
        }
        return SsdFaceFinder.Combine(bgr.Width, bgr.Height, regions, perRegion);
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
        var cpuMs = 1000 * CpuClock.Seconds() / Math.Max(1, report.Frames);
        Console.WriteLine(ChildMarker + string.Join(' ', new[] { report.Fps, report.Frames, found, rss, cpuMs }.Select(x => x.ToString(CultureInfo.InvariantCulture))));
        return 0;
    }
}
