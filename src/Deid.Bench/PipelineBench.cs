using System.Diagnostics;
using Deid.Faces;
using Deid.Media;
using Deid.Pipeline;
using OpenCvSharp;
using VideoWriter = Deid.Media.VideoWriter;

namespace Deid.Bench;

/// <summary>
/// Issues 2 and 13: each stage alone — frames/s and CPU ms per frame (process user+sys, ffmpeg children included) —
/// the transcode floor (decode + encode, the same encoder settings as the pipeline's), the whole blur pipeline, its
/// ratio to the floor (target ≥ 0.8) and to the ideal (cores ÷ the stages' summed CPU s/frame: when every stage uses
/// every core, "slowest stage alone" says nothing), output quality outside the face regions (PSNR/SSIM vs the input),
/// detection coverage on every shared clip against the previous HOG path, and peak RSS on a clip and on it looped 6×.
/// </summary>
public static class PipelineBench
{
    private const int StageFrames = 90;   // frames held in memory to time the in-memory stages alone
    private const int QualityFrames = 60; // frames compared for PSNR/SSIM outside the faces

    public static void Run(BenchResults r)
    {
        var clips = new List<(string Clip, string Path)>();
        foreach (var clip in new[] { "talk_d3.mp4", "talk_1080p.mp4" })
        {
            var path = Path.Combine(Suites.Shared, "media", "videos", clip);
            if (File.Exists(path)) clips.Add((clip, path));
            else Console.Error.WriteLine($"skip {clip}: not found at {path}");
        }
        foreach (var (clip, path) in clips) RunClip(r, clip, path);
        // The torch detectors after every clip's floor and whole pipeline: a HOG run never loads libtorch (the CLI's
        // does not), so those are measured in a process that has not either.
        foreach (var (clip, path) in clips) TorchDetectorRows(r, clip, path);
        // DEID_BENCH_CLIPS_ONLY=1: the two clips' rows alone (while tuning; coverage also runs as `coverage`).
        if (Environment.GetEnvironmentVariable("DEID_BENCH_CLIPS_ONLY") == "1") return;
        Coverage(r);
        RssLoop(r, Path.Combine(Suites.Shared, "media", "videos", "talk_d3.mp4"));
        SpeedTable.Write(r);
    }

    /// <summary>Frames/s and CPU ms/frame of one measured span.</summary>
    private sealed class Span
    {
        private readonly Stopwatch _wall = Stopwatch.StartNew();
        private readonly double _cpu0 = CpuClock.Seconds();
        public double Wall => _wall.Elapsed.TotalSeconds;
        public double Cpu => CpuClock.Seconds() - _cpu0;
    }

    private static double AddStage(BenchResults r, string suite, string name, Span span, long frames, Dictionary<string, object>? extra = null) =>
        AddStage(r, suite, name, span.Wall, span.Cpu, frames, extra);

    private static double AddStage(BenchResults r, string suite, string name, double wall, double cpu, long frames, Dictionary<string, object>? extra = null)
    {
        var cpuMs = 1000 * cpu / Math.Max(1, frames);
        var details = new Dictionary<string, object>(extra ?? []) { ["cpu_ms_per_frame"] = cpuMs, ["frames"] = frames };
        r.Add(new(suite, name, frames / wall, "fps", details));
        r.Add(new(suite, name + ": CPU", cpuMs, "ms/frame"));
        return cpuMs;
    }

    /// <summary>Timed runs each of the floor and the whole pipeline per clip, alternately (seven: five left the ratio
    /// to the noise of a shared machine by ±0.05 between bench runs).</summary>
    private const int TimedRuns = 7;

    private static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    private static void RunClip(BenchResults r, string clip, string path)
    {
        var info = MediaProbe.Probe(path);
        string suite = "pipeline:" + clip;
        using var tmp = new BenchTemp();
        // The same encoder settings for the floor, the encode stage and the whole pipeline (the defaults).
        var encoder = new VideoWriterOptions();
        var stageCpu = new Dictionary<string, double>();

        var span = new Span();
        long total = 0;
        using (var reader = new VideoReader(path))
            foreach (var f in reader.ReadFrames()) { total++; f.Dispose(); }
        stageCpu["decode"] = AddStage(r, suite, "decode alone", span, total);

        (double Wall, double Cpu) Floor()
        {
            var s = new Span();
            using (var reader = new VideoReader(path))
            using (var writer = new VideoWriter(tmp.File("floor.mp4"), reader.Info, encoder))
            {
                foreach (var f in reader.ReadFrames()) { writer.Write(f); f.Dispose(); }
                writer.Complete();
            }
            return (s.Wall, s.Cpu);
        }
        // Run once here (its JIT and the encoder's start-up paid) and measured below, alternating with the whole
        // pipeline, so that the machine's speed drifting over the run moves both alike.
        Floor();

        // In-memory stages on the first frames.
        var frames = new List<VideoFrame>();
        using (var reader = new VideoReader(path))
            foreach (var f in reader.ReadFrames()) { frames.Add(f); if (frames.Count == StageFrames) break; }
        try
        {
            int workers = Environment.ProcessorCount;
            using var predictor = DlibShapePredictor.Load();
            span = new Span();
            // As the pipeline runs it: the stream finder follows the frames in order, in one worker.
            var found = DetectFrames(frames, predictor, 1, () => new HogStreamFinder());
            stageCpu["detect"] = AddStage(r, suite, "detect+landmarks alone (HOG stream finder, 1 worker)", span, frames.Count,
                new() { ["dlib_isa"] = DlibFaceDetector.Isa });
            var landmarks = found.Select(d => d.MaxBy(x => x.Box.Area)?.Landmarks).ToArray();

            // As blur mode aligns: its stage's crop size, bilinear (no cubic kernel for a crop only blurred).
            using IFaceStage blurStage = new BlurStage();
            var aligner = new FfhqAligner(blurStage.CropSize, sharp: blurStage.ReplacesIdentity);
            var aligned = new List<(int Frame, AlignedFace Face)>();
            span = new Span();
            for (int i = 0; i < frames.Count; i++)
                if (landmarks[i] is { } lm) aligned.Add((i, aligner.Align(frames[i].Image, lm)));
            stageCpu["align"] = AddStage(r, suite, "align alone", span, frames.Count);

            var crops = aligned.Select(a => a.Face.Crop.Clone()).ToList();
            span = new Span();
            foreach (var c in crops) FaceObfuscation.Blur(c); // what BlurStage.Process does to each crop
            stageCpu["blur"] = AddStage(r, suite, "face stage alone (blur)", span, frames.Count);

            // Blur mode feathers its crops in (no colour matching: that would pull them back towards the face),
            // coarsely where they are much enlarged, into one reused buffer, as the paste stage does.
            span = new Span();
            using (var buffer = new PasteBuffer())
                for (int k = 0; k < aligned.Count; k++)
                    FacePaster.Paste(frames[aligned[k].Frame].Image, aligned[k].Face, crops[k], BlendMode.Feather, buffer, smooth: true);
            stageCpu["paste"] = AddStage(r, suite, "paste alone (feather)", span, frames.Count);
            foreach (var c in crops) c.Dispose();
            foreach (var a in aligned) a.Face.Dispose();

            span = new Span();
            using (var writer = new VideoWriter(tmp.File("enc.mp4"), info, encoder))
            {
                foreach (var f in frames) writer.Write(f);
                writer.Complete();
            }
            stageCpu["encode"] = AddStage(r, suite, "encode alone", span, frames.Count);
        }
        finally
        {
            foreach (var f in frames) f.Dispose();
        }

        // The whole pipeline, blur mode, default detector and encoder, measured from its second run on (the first
        // pays for the JIT, the shape predictor's first read from disk and the native libraries' start-up).
        // Then floor and whole alternately, TimedRuns of each: each figure is the median of its runs, so that a drift
        // of the machine's speed moves both alike and runs slowed by something else on the machine (up to three of
        // seven, on these shared 2-core machines) do not decide the ratio.
        var output = tmp.File("blur.mp4");
        var options = new AnonymizeOptions { Mode = AnonymizeMode.Blur, Output = encoder };
        Anonymizer.RunAsync(path, output, options).GetAwaiter().GetResult().Dispose();
        var floorRuns = new List<(double Wall, double Cpu)>();
        var wholeRuns = new List<(double Wall, double Cpu)>();
        AnonymizeReport? last = null;
        for (int run = 0; run < TimedRuns; run++)
        {
            floorRuns.Add(Floor());
            last?.Dispose();
            var s = new Span();
            last = Anonymizer.RunAsync(path, output, options).GetAwaiter().GetResult();
            wholeRuns.Add((s.Wall, s.Cpu));
        }
        using var report = last!; // the last run's counts, and its output for the quality rows
        double floorWall = Median(floorRuns.Select(x => x.Wall)), wholeWall = Median(wholeRuns.Select(x => x.Wall));
        var floorFps = total / floorWall;
        AddStage(r, suite, "transcode floor (decode+encode)", floorWall, Median(floorRuns.Select(x => x.Cpu)), total,
            new() { ["preset"] = encoder.Preset, ["crf"] = encoder.Crf?.ToString() ?? "default", ["threads"] = encoder.Threads?.ToString() ?? "auto",
                    ["runs_fps"] = floorRuns.Select(x => total / x.Wall).ToArray() });
        var wholeCpu = AddStage(r, suite, "whole pipeline (blur)", wholeWall, Median(wholeRuns.Select(x => x.Cpu)), report.Frames,
            new() { ["runs_fps"] = wholeRuns.Select(x => report.Frames / x.Wall).ToArray() });
        double whole = report.Frames / wholeWall;
        double ideal = Environment.ProcessorCount / (stageCpu.Values.Sum() / 1000);
        r.Add(new(suite, "ideal (cores / sum of stage CPU s/frame)", ideal, "fps",
            stageCpu.ToDictionary(kv => kv.Key + "_cpu_ms", kv => (object)kv.Value)));
        r.Add(new(suite, "whole / ideal", whole / ideal, "ratio"));
        r.Add(new(suite, "whole / transcode floor", whole / floorFps, "ratio (target >= 0.8)",
            new() { ["whole_fps"] = whole, ["floor_fps"] = floorFps, ["whole_cpu_ms"] = wholeCpu, ["target_ratio"] = 0.8 }));
        Quality(r, suite, path, output, report);
    }

    /// <summary>Timed runs of each torch detector row, alternately (ssd, both, ssd, …): one run each left "both ÷ ssd"
    /// to a shared machine's noise (1.1× to 1.65× between bench runs of the same code).</summary>
    private const int DetectorRuns = 3;

    /// <summary>The SSD and both-detector rows of a clip, on the frames the HOG row had, each the median of its runs; skipped when the SSD's weights are missing.</summary>
    private static void TorchDetectorRows(BenchResults r, string clip, string path)
    {
        string suite = "pipeline:" + clip;
        Deid.Models.FaceApi.SsdMobilenetv1 ssd;
        try { ssd = FaceFinderFactory.LoadSsd(null, "cpu"); }
        catch (PipelineException e) { Console.Error.WriteLine($"skip the ssd and both detect rows: {e.Message}"); return; }
        var frames = new List<VideoFrame>();
        using (var reader = new VideoReader(path))
            foreach (var f in reader.ReadFrames()) { frames.Add(f); if (frames.Count == StageFrames) break; }
        // As the CLI does for a torch detector; the HOG rows and the whole pipeline keep the streaming setting.
        Deid.Media.NativeMemory.TuneForTensors();
        try
        {
            using (ssd)
            using (var predictor = DlibShapePredictor.Load())
            {
                DetectorKind[] kinds = [DetectorKind.Ssd, DetectorKind.Both];
                var device = new DeviceExecutor();
                // Warmed up first on a few frames (the JIT, and oneDNN's kernels for each input size the tiles take),
                // so that neither row pays for what the other already paid.
                foreach (var kind in kinds)
                    DetectFrames(frames.Take(15).ToList(), predictor, 1, new FaceFinderFactory(kind, ssd, device).CreateForStream);
                var runs = kinds.ToDictionary(k => k, _ => new List<(double Wall, double Cpu, int WithFace)>());
                for (var run = 0; run < DetectorRuns; run++)
                    foreach (var kind in kinds)
                    {
                        var span = new Span();
                        // As the pipeline runs it: the stream finder over the frames in order.
                        var found = DetectFrames(frames, predictor, 1, new FaceFinderFactory(kind, ssd, device).CreateForStream);
                        runs[kind].Add((span.Wall, span.Cpu, found.Count(d => d.Count > 0)));
                    }
                foreach (var kind in kinds)
                {
                    var name = kind.ToString().ToLowerInvariant();
                    var k = runs[kind];
                    r.Add(new(suite, $"detect+landmarks alone, {name} stream finder", frames.Count / Median(k.Select(x => x.Wall)),
                        "fps" + (kind == DetectorKind.Ssd ? " (target >= 5 on talk_1080p)" : ""),
                        new()
                        {
                            ["detector"] = name, ["frames_with_face"] = k.Min(x => x.WithFace), ["frames"] = frames.Count,
                            ["cpu_ms_per_frame"] = 1000 * Median(k.Select(x => x.Cpu)) / frames.Count,
                            ["runs_fps"] = k.Select(x => frames.Count / x.Wall).ToArray(),
                        }));
                }
            }
        }
        finally
        {
            Deid.Media.NativeMemory.TuneForStreaming();
            foreach (var f in frames) f.Dispose();
        }
    }

    /// <summary>
    /// PSNR (BGR) and SSIM (luma) of the pipeline's output against its input over the pixels outside every face's
    /// region (its box ×2, beyond what paste or the fallback blur touch): what the encoder alone costs the picture.
    /// </summary>
    private static void Quality(BenchResults r, string suite, string input, string output, AnonymizeReport report)
    {
        var faces = report.FrameRecords.ToDictionary(f => f.Index, f => f.Faces);
        double se = 0, ssim = 0; long px = 0, ssimPx = 0;
        using (var a = new VideoReader(input))
        using (var b = new VideoReader(output))
        {
            using var ea = a.ReadFrames().GetEnumerator();
            using var eb = b.ReadFrames().GetEnumerator();
            for (var n = 0; n < QualityFrames && ea.MoveNext() && eb.MoveNext(); n++)
            {
                using var fa = ea.Current;
                using var fb = eb.Current;
                using var mask = new Mat(fa.Image.Rows, fa.Image.Cols, MatType.CV_8UC1, Scalar.All(255));
                if (faces.TryGetValue(fa.Index, out var list))
                    foreach (var f in list)
                    {
                        var rect = f.Box.Scale(2f).Clip(mask.Width, mask.Height).ToRect();
                        if (rect.Width > 0 && rect.Height > 0) mask[rect].SetTo(Scalar.All(0));
                    }
                var (sse, count, ssimSum, ssimCount) = Compare(fa.Image, fb.Image, mask);
                se += sse; px += count; ssim += ssimSum; ssimPx += ssimCount;
            }
        }
        if (px == 0) return;
        double mse = se / px;
        r.Add(new(suite, "output vs input outside faces: PSNR", mse > 0 ? 10 * Math.Log10(255.0 * 255.0 / mse) : 99, "dB",
            new() { ["frames"] = QualityFrames, ["preset"] = new VideoWriterOptions().Preset }));
        r.Add(new(suite, "output vs input outside faces: SSIM", ssimPx > 0 ? ssim / ssimPx : 1, "(1 = identical)"));
    }

    private static (double Sse, long Count, double SsimSum, long SsimCount) Compare(Mat a, Mat b, Mat mask)
    {
        long n = Cv2.CountNonZero(mask);
        if (n == 0) return (0, 0, 0, 0);
        using var fa = new Mat(); using var fb = new Mat();
        a.ConvertTo(fa, MatType.CV_64FC3);
        b.ConvertTo(fb, MatType.CV_64FC3);
        using var d = new Mat();
        Cv2.Subtract(fa, fb, d);
        using var sq = new Mat();
        Cv2.Multiply(d, d, sq);
        var mean = Cv2.Mean(sq, mask);
        double sse = (mean.Val0 + mean.Val1 + mean.Val2) * n;

        // SSIM map (Wang et al. 2004: 11×11 Gaussian, σ 1.5) on luma, averaged over the mask.
        using var ya = Luma(a);
        using var yb = Luma(b);
        using var muA = Blur(ya); using var muB = Blur(yb);
        using var aa = Mul(ya, ya); using var bb = Mul(yb, yb); using var ab = Mul(ya, yb);
        using var sAA = Blur(aa); using var sBB = Blur(bb); using var sAB = Blur(ab);
        using var mA2 = Mul(muA, muA); using var mB2 = Mul(muB, muB); using var mAB = Mul(muA, muB);
        const double c1 = 6.5025, c2 = 58.5225; // (0.01·255)², (0.03·255)²
        using var t1 = new Mat(); Cv2.AddWeighted(mAB, 2, mAB, 0, c1, t1);                       // 2 μaμb + c1
        using var cov = new Mat(); Cv2.Subtract(sAB, mAB, cov);
        using var t2 = new Mat(); Cv2.AddWeighted(cov, 2, cov, 0, c2, t2);                       // 2 σab + c2
        using var t3 = new Mat(); Cv2.AddWeighted(mA2, 1, mB2, 1, c1, t3);                       // μa² + μb² + c1
        using var va = new Mat(); Cv2.Subtract(sAA, mA2, va);
        using var vb = new Mat(); Cv2.Subtract(sBB, mB2, vb);
        using var t4 = new Mat(); Cv2.AddWeighted(va, 1, vb, 1, c2, t4);                         // σa² + σb² + c2
        using var num = Mul(t1, t2);
        using var den = Mul(t3, t4);
        using var map = new Mat();
        Cv2.Divide(num, den, map);
        return (sse, 3 * n, Cv2.Mean(map, mask).Val0 * n, n);

        static Mat Luma(Mat bgr)
        {
            using var g = new Mat();
            Cv2.CvtColor(bgr, g, ColorConversionCodes.BGR2GRAY);
            var f = new Mat();
            g.ConvertTo(f, MatType.CV_64FC1);
            return f;
        }
        static Mat Blur(Mat m) { var o = new Mat(); Cv2.GaussianBlur(m, o, new Size(11, 11), 1.5); return o; }
        static Mat Mul(Mat x, Mat y) { var o = new Mat(); Cv2.Multiply(x, y, o); return o; }
    }

    private static readonly string[] CoverageClips =
    [
        "talk_small.mp4", "talk_d3.mp4", "talk_d0_noaudio.mp4", "talk_d13_portrait_noaudio.mp4", "wide_s13.mp4", "talk_1080p.mp4",
    ];

    /// <summary>
    /// Privacy must not pay for speed: on every shared clip, the frames where the HOG finder finds a face, against the
    /// path it replaced (<see cref="PreviousHogFinder"/>), and the frames the previous path covered that this one does
    /// not; then the same for the SSD (<see cref="SsdCoverage"/>).
    /// </summary>
    public static void Coverage(BenchResults r)
    {
        using var predictor = DlibShapePredictor.Load();
        foreach (var clip in CoverageClips)
        {
            var path = Path.Combine(Suites.Shared, "media", "videos", clip);
            if (!File.Exists(path)) { Console.Error.WriteLine($"skip coverage of {clip}: not found at {path}"); continue; }
            long frames = 0, now = 0, before = 0, lost = 0, full = 0;
            double searched = 0, cpuNow = 0, cpuBefore = 0;
            using var current = new HogStreamFinder();
            using var previous = new PreviousHogFinder();
            using var reader = new VideoReader(path);
            foreach (var f in reader.ReadFrames())
            {
                using (f)
                {
                    frames++;
                    var t0 = CpuClock.OwnSeconds();
                    bool a = current.Find(f.Image).Count > 0;
                    var t1 = CpuClock.OwnSeconds();
                    bool b = previous.Find(f.Image).Count > 0;
                    cpuNow += t1 - t0;
                    cpuBefore += CpuClock.OwnSeconds() - t1;
                    if (current.Last.FullScan) full++;
                    searched += current.Last.SearchedFraction;
                    if (a) now++;
                    if (b) before++;
                    if (b && !a) lost++;
                }
            }
            r.Add(new("pipeline:coverage", $"{clip}: frames with a face found", now, $"of {frames} frames",
                new() { ["previous_path"] = before, ["lost_vs_previous"] = lost, ["frames"] = frames }));
            r.Add(new("pipeline:coverage", $"{clip}: frames the previous path found and this one misses", lost, "frames (target 0)"));
            r.Add(new("pipeline:coverage", $"{clip}: HOG CPU per frame, stream finder", 1000 * cpuNow / Math.Max(1, frames), "ms/frame",
                new() { ["previous_path_ms"] = 1000 * cpuBefore / Math.Max(1, frames), ["full_scans"] = full,
                        ["mean_searched_fraction"] = searched / Math.Max(1, frames), ["frames"] = frames }));
            r.Add(new("pipeline:coverage", $"{clip}: HOG CPU per frame, previous full-frame path", 1000 * cpuBefore / Math.Max(1, frames), "ms/frame"));
        }
        SsdCoverage(r);
    }

    private const int SsdCoverageFrames = 90; // per clip: nine full-search intervals (the full search costs ~0.5 s a 1080p frame)

    /// <summary>
    /// The same for the SSD: on every shared clip's first frames, the stream finder (partial searches between full
    /// ones) against the full search on every frame: frames with a face, frames and faces it misses or adds, and
    /// what each costs.
    /// </summary>
    private static void SsdCoverage(BenchResults r)
    {
        Deid.Models.FaceApi.SsdMobilenetv1 ssd;
        try { ssd = FaceFinderFactory.LoadSsd(null, "cpu"); }
        catch (PipelineException e) { Console.Error.WriteLine($"skip ssd coverage: {e.Message}"); return; }
        Deid.Media.NativeMemory.TuneForTensors();
        using (ssd)
        {
            var device = new DeviceExecutor();
            foreach (var clip in CoverageClips)
            {
                var path = Path.Combine(Suites.Shared, "media", "videos", clip);
                if (!File.Exists(path)) { Console.Error.WriteLine($"skip ssd coverage of {clip}: not found at {path}"); continue; }
                long frames = 0, now = 0, before = 0, lost = 0, missed = 0, added = 0, full = 0;
                double cpuNow = 0, cpuBefore = 0;
                using var stream = new SsdStreamFinder(ssd, device);
                using var finder = new SsdFaceFinder(ssd, device);
                using var reader = new VideoReader(path);
                foreach (var f in reader.ReadFrames())
                {
                    using (f)
                    {
                        if (frames++ == SsdCoverageFrames) break;
                        var t0 = CpuClock.OwnSeconds();
                        var a = stream.FindRaw(f.Image);
                        var t1 = CpuClock.OwnSeconds();
                        var b = finder.FindRaw(f.Image);
                        cpuNow += t1 - t0;
                        cpuBefore += CpuClock.OwnSeconds() - t1;
                        if (stream.Last.FullScan) full++;
                        static bool Same(Deid.Models.FaceApi.SsdFace x, Deid.Models.FaceApi.SsdFace y) =>
                            FaceBox.IoU(SsdFaceFinder.ToDlibBox(x), SsdFaceFinder.ToDlibBox(y)) >= 0.4f;
                        missed += b.Count(y => !a.Any(x => Same(x, y)));
                        added += a.Count(x => !b.Any(y => Same(x, y)));
                        if (a.Count > 0) now++;
                        if (b.Count > 0) before++;
                        if (b.Count > 0 && a.Count == 0) lost++;
                    }
                }
                frames = Math.Min(frames, SsdCoverageFrames);
                r.Add(new("pipeline:coverage-ssd", $"{clip}: frames with a face found, ssd stream finder", now, $"of {frames} frames",
                    new() { ["full_search"] = before, ["lost_vs_full_search"] = lost, ["frames"] = frames }));
                r.Add(new("pipeline:coverage-ssd", $"{clip}: frames the full search finds a face and the stream finder misses", lost, "frames (target 0)"));
                r.Add(new("pipeline:coverage-ssd", $"{clip}: faces the full search finds and the stream finder misses / adds", missed, $"missed; {added} added",
                    new() { ["missed"] = missed, ["added"] = added }));
                r.Add(new("pipeline:coverage-ssd", $"{clip}: SSD CPU per frame, stream finder", 1000 * cpuNow / Math.Max(1, frames), "ms/frame",
                    new() { ["full_search_ms"] = 1000 * cpuBefore / Math.Max(1, frames), ["full_scans"] = full,
                            ["network_work_per_frame"] = stream.Passes / Math.Max(1, frames), ["frames"] = frames }));
                r.Add(new("pipeline:coverage-ssd", $"{clip}: SSD CPU per frame, full search every frame", 1000 * cpuBefore / Math.Max(1, frames), "ms/frame"));
            }
        }
        Deid.Media.NativeMemory.TuneForStreaming();
    }

    /// <summary>
    /// The HOG path before issue 13, kept only as the bench's reference for coverage: the colour frame padded with
    /// black at full size, then shrunk as a whole to the scan size.
    /// </summary>
    private sealed class PreviousHogFinder : IFaceFinder
    {
        private readonly DlibFaceDetector _detector = new(maxSide: HogFaceFinder.MaxScanSide);

        public IReadOnlyList<FaceBox> Find(Mat bgr)
        {
            var pad = (int)Math.Round(HogFaceFinder.EdgePadFraction * Math.Max(bgr.Width, bgr.Height));
            using var image = new Mat();
            Cv2.CopyMakeBorder(bgr, image, pad, pad, pad, pad, BorderTypes.Constant, Scalar.All(0));
            return _detector.Detect(image)
                .Select(b => b with { Left = b.Left - pad, Right = b.Right - pad, Top = b.Top - pad, Bottom = b.Bottom - pad })
                .ToList();
        }

        public void Dispose() => _detector.Dispose();
    }

    /// <summary>The detect stage's work on in-memory frames, one finder per worker: each frame's faces.</summary>
    private static List<FaceDetection>[] DetectFrames(List<VideoFrame> frames, DlibShapePredictor predictor, int workers, Func<IFaceFinder> create)
    {
        var found = new List<FaceDetection>[frames.Count];
        if (workers == 1)
        {
            // In frame order: a stream finder follows the frames.
            using var det = create();
            for (var i = 0; i < frames.Count; i++) found[i] = FrameDetector.Detect(det, predictor, frames[i].Image);
            return found;
        }
        Parallel.For(0, frames.Count, new ParallelOptions { MaxDegreeOfParallelism = workers },
            create,
            (i, _, det) =>
            {
                found[i] = FrameDetector.Detect(det, predictor, frames[i].Image);
                return det;
            },
            det => det.Dispose());
        return found;
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
