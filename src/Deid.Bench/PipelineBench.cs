using System.Diagnostics;
using Deid.Faces;
using Deid.Media;
using Deid.Pipeline;
using VideoWriter = Deid.Media.VideoWriter;

namespace Deid.Bench;

/// <summary>
/// Issue 2's benchmark: each stage alone, the transcode floor (decode + encode), the whole blur pipeline, and
/// peak RSS of the whole pipeline on a clip and on the same clip looped 6× (memory must stay flat).
/// </summary>
public static class PipelineBench
{
    private const int StageFrames = 90;   // frames held in memory to time the in-memory stages alone

    public static void Run(BenchResults r)
    {
        foreach (var clip in new[] { "talk_d3.mp4", "talk_1080p.mp4" })
        {
            var path = Path.Combine(Suites.Shared, "media", "videos", clip);
            if (!File.Exists(path)) { Console.Error.WriteLine($"skip {clip}: not found at {path}"); continue; }
            RunClip(r, clip, path);
        }
        RssLoop(r, Path.Combine(Suites.Shared, "media", "videos", "talk_d3.mp4"));
    }

    private static void RunClip(BenchResults r, string clip, string path)
    {
        var info = MediaProbe.Probe(path);
        long total = info.FrameCount ?? 0;
        string suite = "pipeline:" + clip;
        using var tmp = new BenchTemp();

        // Decode alone.
        var sw = Stopwatch.StartNew();
        long n = 0;
        using (var reader = new VideoReader(path))
            foreach (var f in reader.ReadFrames()) { n++; f.Dispose(); }
        r.Add(new(suite, "decode alone", n / sw.Elapsed.TotalSeconds, "fps"));
        total = n;

        // Transcode floor: decode + encode, no face work.
        sw.Restart();
        using (var reader = new VideoReader(path))
        using (var writer = new VideoWriter(tmp.File("floor.mp4"), reader.Info))
        {
            foreach (var f in reader.ReadFrames()) { writer.Write(f); f.Dispose(); }
            writer.Complete();
        }
        r.Add(new(suite, "transcode floor (decode+encode)", total / sw.Elapsed.TotalSeconds, "fps"));

        // In-memory stages on the first frames.
        var frames = new List<VideoFrame>();
        using (var reader = new VideoReader(path))
            foreach (var f in reader.ReadFrames()) { frames.Add(f); if (frames.Count == StageFrames) break; }
        try
        {
            int workers = Environment.ProcessorCount;
            using var predictor = DlibShapePredictor.Load();
            var (found, hogFps) = DetectFrames(frames, predictor, workers, () => new HogFaceFinder());
            var landmarks = found.Select(d => d.MaxBy(x => x.Box.Area)?.Landmarks).ToArray();
            r.Add(new(suite, $"detect+landmarks alone ({workers} workers)", hogFps, "fps"));
            DetectAlone(r, suite, frames, predictor, workers, DetectorKind.Ssd);

            var aligner = new FfhqAligner(256);
            var aligned = new List<(int Frame, AlignedFace Face)>();
            sw.Restart();
            for (int i = 0; i < frames.Count; i++)
                if (landmarks[i] is { } lm) aligned.Add((i, aligner.Align(frames[i].Image, lm)));
            r.Add(new(suite, "align alone", frames.Count / sw.Elapsed.TotalSeconds, "fps"));

            var crops = aligned.Select(a => a.Face.Crop.Clone()).ToList();
            sw.Restart();
            foreach (var c in crops) FaceObfuscation.Blur(c);
            r.Add(new(suite, "face stage alone (blur)", frames.Count / sw.Elapsed.TotalSeconds, "fps"));

            sw.Restart();
            for (int k = 0; k < aligned.Count; k++)
                FacePaster.Paste(frames[aligned[k].Frame].Image, aligned[k].Face, crops[k]);
            r.Add(new(suite, "paste alone", frames.Count / sw.Elapsed.TotalSeconds, "fps"));
            foreach (var c in crops) c.Dispose();
            foreach (var a in aligned) a.Face.Dispose();

            sw.Restart();
            using (var writer = new VideoWriter(tmp.File("enc.mp4"), info))
            {
                foreach (var f in frames) writer.Write(f);
                writer.Complete();
            }
            r.Add(new(suite, "encode alone", frames.Count / sw.Elapsed.TotalSeconds, "fps"));
        }
        finally
        {
            foreach (var f in frames) f.Dispose();
        }

        // The whole pipeline, blur mode.
        sw.Restart();
        var report = Anonymizer.RunAsync(path, tmp.File("blur.mp4"), new AnonymizeOptions { Mode = AnonymizeMode.Blur }).GetAwaiter().GetResult();
        double whole = report.Frames / sw.Elapsed.TotalSeconds;
        // The whole pipeline runs the default HOG detector, so other detectors' rows are no stage of it.
        var stageRows = r.Rows.Where(x => x.Suite == suite && x.Name.Contains("alone") && x.Extra?.ContainsKey("detector") != true).ToList();
        var slowest = stageRows.MinBy(x => x.Value)!;
        r.Add(new(suite, "whole pipeline (blur)", whole, "fps", new()
        {
            ["slowest_stage"] = slowest.Name,
            ["slowest_stage_fps"] = slowest.Value,
            ["ratio_to_slowest_stage"] = whole / slowest.Value,
            ["target_ratio"] = 0.9,
        }));
        r.Add(new(suite, "whole / slowest stage alone", whole / slowest.Value, "ratio (target >= 0.9)"));
    }

    /// <summary>The detect stage with another detector (HOG is the row above); skipped when its weights are missing.</summary>
    private static void DetectAlone(BenchResults r, string suite, List<VideoFrame> frames, DlibShapePredictor predictor, int workers, DetectorKind kind)
    {
        Deid.Models.FaceApi.SsdMobilenetv1 ssd;
        try { ssd = FaceFinderFactory.LoadSsd(null, "cpu"); }
        catch (PipelineException e) { Console.Error.WriteLine($"skip {kind} detect row: {e.Message}"); return; }
        using (ssd)
        {
            var finders = new FaceFinderFactory(kind, ssd, new DeviceExecutor());
            // As the CLI does for a torch detector; the HOG rows and the whole pipeline keep the streaming setting.
            Deid.Media.NativeMemory.TuneForTensors();
            var (found, fps) = DetectFrames(frames, predictor, workers, finders.Create);
            Deid.Media.NativeMemory.TuneForStreaming();
            var name = kind.ToString().ToLowerInvariant();
            r.Add(new(suite, $"detect+landmarks alone, {name} ({workers} workers)", fps, "fps",
                new() { ["detector"] = name, ["frames_with_face"] = found.Count(d => d.Count > 0), ["frames"] = frames.Count }));
        }
    }

    /// <summary>The detect stage's work on in-memory frames, one finder per worker: each frame's faces, and frames/s.</summary>
    private static (List<FaceDetection>[] Found, double Fps) DetectFrames(List<VideoFrame> frames, DlibShapePredictor predictor, int workers, Func<IFaceFinder> create)
    {
        var found = new List<FaceDetection>[frames.Count];
        var sw = Stopwatch.StartNew();
        Parallel.For(0, frames.Count, new ParallelOptions { MaxDegreeOfParallelism = workers },
            create,
            (i, _, det) =>
            {
                found[i] = FrameDetector.Detect(det, predictor, frames[i].Image);
                return det;
            },
            det => det.Dispose());
        return (found, frames.Count / sw.Elapsed.TotalSeconds);
    }

    /// <summary>Peak RSS of the whole pipeline in a fresh process, on a clip and on it looped 6×.</summary>
    private static void RssLoop(BenchResults r, string clip)
    {
        using var tmp = new BenchTemp();
        var looped = tmp.File("looped6.mp4");
        RunTool("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-stream_loop", "5", "-i", clip, "-c", "copy", looped);
        double single = ChildPeakRss(clip, tmp.File("a.mp4"));
        double six = ChildPeakRss(looped, tmp.File("b.mp4"));
        r.Add(new("pipeline:rss", "peak RSS, talk_d3 once", single, "MiB"));
        r.Add(new("pipeline:rss", "peak RSS, talk_d3 looped 6x", six, "MiB"));
        r.Add(new("pipeline:rss", "looped / once", six / single, "ratio (target <= 1.1)"));
    }

    /// <summary>Entry for `Deid.Bench --child-rss IN OUT [latent]`: runs the blur (or latent) pipeline and prints its peak RSS (MiB).</summary>
    public static int ChildRss(string input, string output, string mode = "blur")
    {
        if (mode == "latent") LatentBench.ChildRun(input, output);
        else Anonymizer.RunAsync(input, output, new AnonymizeOptions { Mode = AnonymizeMode.Blur }).GetAwaiter().GetResult();
        Console.WriteLine("PEAK_RSS_MIB " + ((Suites.PeakRssKb() ?? Environment.WorkingSet / 1024) / 1024.0).ToString(System.Globalization.CultureInfo.InvariantCulture));
        return 0;
    }

    internal static double ChildPeakRss(string input, string output, string mode = "blur")
    {
        var self = Environment.ProcessPath!;
        var args = new List<string>();
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") args.Add(typeof(PipelineBench).Assembly.Location);
        args.AddRange(["--child-rss", input, output, mode]);
        var (code, stdout, stderr) = RunTool(self, args.ToArray());
        var line = stdout.Split('\n').FirstOrDefault(l => l.StartsWith("PEAK_RSS_MIB "))
                   ?? throw new InvalidOperationException($"child run failed ({code}): {stderr}");
        return double.Parse(line["PEAK_RSS_MIB ".Length..], System.Globalization.CultureInfo.InvariantCulture);
    }


    internal static (int, string, string) RunTool(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0 && exe == "ffmpeg") throw new InvalidOperationException("ffmpeg: " + err.Result);
        return (p.ExitCode, o, err.Result);
    }
}

internal sealed class BenchTemp : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("deid-bench-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}
