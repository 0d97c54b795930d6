using System.Diagnostics;
using System.Globalization;
using Deid.Faces;
using Deid.Media;
using Deid.Models;
using Deid.Pipeline;

namespace Deid.Bench;

/// <summary>
/// Issue 9's benchmark: latent mode with the method's real-size networks (random weights where no file is imported)
/// on the first frames of talk_d3 and talk_1080p. Per batch size: the whole pipeline, the inference stage alone on
/// the same crops, their ratio (target ≥ 0.9: nothing else holds G back), and the share of wall time the inference
/// stage sat idle (target &lt; 10%); stages alone; peak RSS on a clip and on it looped 6× (target ≤ 1.1).
/// DEID_BENCH_LATENT_FRAMES (default 24) and DEID_BENCH_LATENT_BATCHES (default 1,4,16) size it.
/// </summary>
public static class LatentBench
{
    private static readonly LatentWeightsSpec Spec = new() { RandomWeights = true };

    private static int Frames => int.TryParse(Environment.GetEnvironmentVariable("DEID_BENCH_LATENT_FRAMES"), out var n) && n > 0 ? n : 24;

    private static int[] Batches => (Environment.GetEnvironmentVariable("DEID_BENCH_LATENT_BATCHES") ?? "1,4,16")
        .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();

    public static void Run(BenchResults r)
    {
        NativeMemory.TuneForTensors();
        using var engine = new DeidEngine();
        var load = Stopwatch.StartNew();
        var nets = engine.Latent(Spec);
        r.Add(new("latent", "load networks", load.Elapsed.TotalSeconds, "s", new()
        {
            ["random"] = string.Join(",", nets.RandomParts), ["files"] = string.Join(",", nets.Files.Values),
        }));
        foreach (var clip in new[] { "talk_d3.mp4", "talk_1080p.mp4" })
        {
            var path = Path.Combine(Suites.Shared, "media", "videos", clip);
            if (!File.Exists(path)) { Console.Error.WriteLine($"skip {clip}: not found at {path}"); continue; }
            RunClip(r, engine, clip, path);
        }
        RssLoop(r, Path.Combine(Suites.Shared, "media", "videos", "talk_d3.mp4"));
        NativeMemory.TuneForStreaming();
    }

    private static void RunClip(BenchResults r, DeidEngine engine, string clip, string path)
    {
        using var tmp = new BenchTemp();
        var cut = tmp.File("cut.mp4");
        PipelineBench.RunTool("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", path, "-frames:v", Frames.ToString(CultureInfo.InvariantCulture),
            "-c:v", "libx264", "-crf", "16", "-preset", "veryfast", "-c:a", "copy", cut);
        var suite = "latent:" + clip;
        var nets = engine.Latent(Spec);

        // Stages alone on the same frames: detect + landmarks + align, then the crops for the inference-alone rows.
        var frames = new List<VideoFrame>();
        using (var reader = new VideoReader(cut))
            foreach (var f in reader.ReadFrames()) frames.Add(f);
        var crops = new List<FaceCrop>();
        try
        {
            var faces = engine.Faces(DetectorKind.Hog, 0.5f);
            var sw = Stopwatch.StartNew();
            var found = new List<(VideoFrame Frame, FoundFace Face)>();
            foreach (var f in frames)
            {
                var face = faces.Find(f.Image).FirstOrDefault();
                if (face == null) continue;
                found.Add((f, face));
                using var aligned = FaceImageService.Align(f.Image, face, nets.ImageSize);
                crops.Add(new FaceCrop(f.Index, 1, aligned.Crop.Clone(), f.Time.TotalSeconds, aligned.TransformToCrop(face.Landmarks.Points)));
            }
            r.Add(new(suite, "detect+landmarks+align alone (1 thread)", frames.Count / sw.Elapsed.TotalSeconds, "fps"));

            var recognizer = engine.Recognizer;
            sw.Restart();
            foreach (var (f, face) in found) recognizer.Embed(f.Image, face.Landmarks.Points);
            foreach (var c in crops) recognizer.Embed(c.Crop, c.Landmarks!);
            r.Add(new(suite, "audit embeddings alone (2 per face)", found.Count / sw.Elapsed.TotalSeconds, "faces/s"));

            foreach (var batch in Batches)
            {
                double alone;
                using (var stage = new LatentFaceStage(nets, recognizer, new LatentOptions(), batch, [], new Dictionary<string, IdentityPhoto>(), _ => { }))
                {
                    // The identity is drawn on first use: outside the timing, as the pipeline's pre-run work is.
                    foreach (var m in engine.Executor.Run(() => stage.Process([crops[0]], CancellationToken.None))) m.Dispose();
                    sw.Restart();
                    foreach (var chunk in crops.Chunk(batch))
                        foreach (var m in engine.Executor.Run(() => stage.Process(chunk, CancellationToken.None))) m.Dispose();
                    alone = crops.Count / sw.Elapsed.TotalSeconds;
                }
                r.Add(new(suite, $"inference alone (E_attr+M+G), batch {batch}", alone, "faces/s"));

                var options = new AnonymizeOptions { Mode = AnonymizeMode.Latent, BatchSize = batch, Latent = new LatentOptions { Weights = Spec } };
                sw.Restart();
                var report = engine.AnonymizeAsync(cut, tmp.File($"out{batch}.mp4"), options).GetAwaiter().GetResult();
                var wall = sw.Elapsed.TotalSeconds;
                var whole = report.Frames / wall;
                var inf = report.Inference!;
                var idle = Math.Max(0, 1 - inf.Busy.TotalSeconds / wall);
                var facesPerFrame = report.Frames == 0 ? 0 : (double)inf.Crops / report.Frames;
                var ratio = whole * facesPerFrame / alone;
                r.Add(new(suite, $"whole pipeline, batch {batch}", whole, "fps", new()
                {
                    ["frames"] = report.Frames, ["faces_replaced"] = report.Replaced, ["mean_batch"] = inf.MeanBatch,
                    ["inference_busy_s"] = inf.Busy.TotalSeconds, ["wall_s"] = wall, ["leaks_found"] = report.LeaksFound,
                }));
                r.Add(new(suite, $"whole / inference alone, batch {batch}", ratio, "ratio (target >= 0.9)"));
                r.Add(new(suite, $"inference idle share of wall time, batch {batch}", idle, "fraction (target < 0.1)"));
            }
        }
        finally
        {
            foreach (var c in crops) c.Crop.Dispose();
            foreach (var f in frames) f.Dispose();
        }
    }

    /// <summary>Peak RSS of latent mode in a fresh process, on the first frames of a clip and on them looped 6×.</summary>
    private static void RssLoop(BenchResults r, string clip)
    {
        using var tmp = new BenchTemp();
        var once = tmp.File("once.mp4");
        var looped = tmp.File("looped6.mp4");
        var frames = Math.Max(4, Frames / 3).ToString(CultureInfo.InvariantCulture);
        PipelineBench.RunTool("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", clip, "-frames:v", frames, "-c:v", "libx264", "-crf", "16", "-preset", "veryfast", "-an", once);
        PipelineBench.RunTool("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-stream_loop", "5", "-i", once, "-c", "copy", looped);
        double single = PipelineBench.ChildPeakRss(once, tmp.File("a.mp4"), "latent");
        double six = PipelineBench.ChildPeakRss(looped, tmp.File("b.mp4"), "latent");
        r.Add(new("latent:rss", $"peak RSS, talk_d3 first {frames} frames", single, "MiB"));
        r.Add(new("latent:rss", "peak RSS, the same looped 6x", six, "MiB"));
        r.Add(new("latent:rss", "looped / once", six / single, "ratio (target <= 1.1)"));
    }

    /// <summary>The child side of <see cref="RssLoop"/>.</summary>
    public static void ChildRun(string input, string output)
    {
        NativeMemory.TuneForTensors();
        Anonymizer.RunAsync(input, output, new AnonymizeOptions { Mode = AnonymizeMode.Latent, Latent = new LatentOptions { Weights = Spec } })
            .GetAwaiter().GetResult();
    }
}
