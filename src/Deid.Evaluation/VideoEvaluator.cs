using Deid.Faces;
using Deid.Media;
using OpenCvSharp;

namespace Deid.Evaluation;

/// <summary>Frame-aligned comparison of an original video and its anonymized version.</summary>
public static class VideoEvaluator
{
    private const float MatchIoU = 0.3f;
    private const int ThumbHeight = 160;

    // What the metrics need to remember about one source face over time. Faces are matched to tracks by
    // Assignment.MatchByIoU, the optimal assignment the pipeline's tracker uses too, so crossing faces keep their ids.
    private sealed class Track
    {
        public int Id;
        public FaceBox LastBox;
        public long LastIndex;
        public float[]? LastOutputEmbedding;
        public long LastOutputIndex = long.MinValue;
        // Last two evaluated frames' landmarks, for the second difference.
        public (long Index, Point2f[] Src, Point2f[]? Out)? Prev1, Prev2;
        public readonly List<(FaceMetrics Face, float[] Embedding)> Outputs = [];
    }

    public static EvaluationReport Evaluate(string source, string output, EvaluationOptions options,
        EvalContext ctx, string workDir, IProgress<long>? progress = null, CancellationToken ct = default)
    {
        if (options.Stride < 1) throw new ArgumentException($"--stride must be at least 1 (got {options.Stride})");

        var report = new EvaluationReport
        {
            Kind = "video", Source = Path.GetFullPath(source), Output = Path.GetFullPath(output), Target = options.Target,
            Stride = options.Stride, ExpressionCropSize = EvalContext.ExpressionCropSize, Threshold = ctx.Threshold,
        };
        report.Warnings.AddRange(ctx.Warnings);

        using var srcReader = new VideoReader(source);
        using var outReader = new VideoReader(output);
        var si = srcReader.Info;
        var oi = outReader.Info;
        if (si.Width != oi.Width || si.Height != oi.Height)
            report.Warnings.Add($"frame sizes differ: source {si.Width}x{si.Height}, output {oi.Width}x{oi.Height}; output boxes are compared in output pixels");

        var target = TargetEmbedding(options.Target, ctx, report);
        var threshold = ctx.Threshold.Threshold;

        var total = si.FrameCount ?? (long)Math.Round(si.Duration.TotalSeconds * si.AverageFrameRate.Value);
        var sheetEvery = Math.Max(1, total / Math.Max(1, options.ContactSheetFrames));
        var sheet = new List<SheetItem>();

        var tracks = new List<Track>();
        var nextTrack = 1;
        var coverage = new CoverageSummary();

        using var se = srcReader.ReadFrames(ct).GetEnumerator();
        using var oe = outReader.ReadFrames(ct).GetEnumerator();
        long n = 0;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var hasS = se.MoveNext();
            var hasO = oe.MoveNext();
            if (!hasS || !hasO)
            {
                if (hasS) { se.Current.Dispose(); report.Warnings.Add($"the output has fewer frames than the source: it ends at frame {n}"); }
                if (hasO) { oe.Current.Dispose(); report.Warnings.Add($"the output has more frames than the source (source ends at frame {n})"); }
                break;
            }
            using var sf = se.Current;
            using var of = oe.Current;
            n++;
            if (sf.Index % options.Stride != 0) continue;

            var frame = EvaluateFrame(sf, of, ctx, target, threshold, tracks, ref nextTrack, options.Stride);
            report.Frames.Add(frame);
            coverage.FramesEvaluated++;
            if (frame.SourceFaces > 0) coverage.FramesWithSourceFace++;
            if (frame.OutputFaces > 0) coverage.FramesWithOutputFace++;
            coverage.SourceFaces += frame.SourceFaces;
            coverage.OutputFaces += frame.OutputFaces;
            coverage.MatchedFaces += frame.Matched;
            coverage.MissingFaces += frame.Missing;
            coverage.ExtraFaces += frame.Extra;

            if (sf.Index % sheetEvery == 0 && sheet.Count < options.ContactSheetFrames)
                sheet.Add(new SheetItem($"#{sf.Index}  {sf.Time.TotalSeconds:0.00}s", Thumb(sf.Image), Thumb(of.Image)));
            progress?.Report(n);
        }
        if (n == 0) throw new MediaException($"no frames could be read from {source}");
        coverage.OutputDetectionRate = coverage.SourceFaces > 0 ? (double)coverage.MatchedFaces / coverage.SourceFaces : null;
        report.Coverage = coverage;
        if (coverage.SourceFaces == 0) report.Warnings.Add("no face was detected in the source video: nothing to measure");

        // The clip's mean output identity is only known at the end: a second, in-memory pass over the embeddings.
        foreach (var t in tracks)
        {
            var mean = OnnxFaceRecognizer.Mean(t.Outputs.Select(o => o.Embedding));
            foreach (var (face, emb) in t.Outputs) face.ToClipMean = Math.Round(OnnxFaceRecognizer.Cosine(emb, mean), 6);
        }

        var allFaces = report.Frames.SelectMany(f => f.Faces).ToList();
        report.Summary = Summarize(allFaces);
        report.LeakFraction = LeakFraction(allFaces);
        foreach (var g in allFaces.GroupBy(f => f.Track).OrderBy(g => g.Key))
            report.Tracks.Add(new TrackSummary
            {
                Track = g.Key, Frames = g.Count(), OutputDetected = g.Count(f => f.OutputDetected),
                Metrics = Summarize(g.ToList()), LeakFraction = LeakFraction(g.ToList()),
            });

        WritePlots(report, workDir, sheet);
        return report;
    }

    private static float[]? TargetEmbedding(string? target, EvalContext ctx, EvaluationReport report)
    {
        if (string.IsNullOrEmpty(target)) return null;
        if (target.StartsWith("seed:", StringComparison.OrdinalIgnoreCase))
        {
            if (!long.TryParse(target.AsSpan(5), out _)) throw new ArgumentException($"--target {target}: expected seed:N with an integer N");
            report.Warnings.Add($"target {target} is a generated identity with no photo: identity-to-target is not measured; see the similarity to the clip's mean output identity instead");
            return null;
        }
        if (!File.Exists(target)) throw new FileNotFoundException($"target photo not found: {target}", target);
        using var img = Cv2.ImRead(target, ImreadModes.Color);
        if (img.Empty()) throw new ArgumentException($"target photo is not a readable image: {target}");
        var face = ctx.AnalyzeStill(img, fallbackWholeImage: false)
            ?? throw new ArgumentException($"no face found in the target photo {target}");
        return face.Embedding;
    }

    private static FrameMetrics EvaluateFrame(VideoFrame sf, VideoFrame of, EvalContext ctx, float[]? target, double threshold,
        List<Track> tracks, ref int nextTrack, int stride)
    {
        var src = ctx.Analyze(sf.Image);
        var outp = ctx.Analyze(of.Image);
        var frame = new FrameMetrics { Index = sf.Index, Time = Math.Round(sf.Time.TotalSeconds, 6), SourceFaces = src.Count, OutputFaces = outp.Count };

        var srcBoxes = src.Select(f => f.Box).ToList();
        var srcToOut = Assignment.MatchByIoU(srcBoxes, outp.Select(f => f.Box).ToList(), MatchIoU);
        frame.Matched = srcToOut.Count(o => o >= 0);
        frame.Missing = src.Count - frame.Matched;
        frame.Extra = outp.Count - frame.Matched;

        // Tracks follow the source faces: the output may lose the face, the original does not.
        var live = tracks.Where(t => sf.Index - t.LastIndex <= 10L * stride).ToList();
        var srcToTrack = Assignment.MatchByIoU(srcBoxes, live.Select(t => t.LastBox).ToList(), MatchIoU);

        for (var i = 0; i < src.Count; i++)
        {
            var s = src[i];
            var track = srcToTrack[i] >= 0 ? live[srcToTrack[i]] : null;
            if (track is null)
            {
                track = new Track { Id = nextTrack++ };
                tracks.Add(track);
            }
            var consecutive = track.LastIndex == sf.Index - stride;
            track.LastBox = s.Box;
            track.LastIndex = sf.Index;

            var fm = new FaceMetrics { Track = track.Id, SourceBox = Box(s.Box), SourcePose = PoseJson.From(s.Pose) };
            Point2f[]? outPts = null;
            if (srcToOut[i] >= 0)
            {
                var o = outp[srcToOut[i]];
                outPts = o.Landmarks.Points;
                fm.OutputDetected = true;
                fm.OutputBox = Box(o.Box);
                fm.OutputPose = PoseJson.From(o.Pose);
                fm.Leak = R(OnnxFaceRecognizer.Cosine(o.Embedding, s.Embedding));
                if (target != null) fm.IdentityToTarget = R(OnnxFaceRecognizer.Cosine(o.Embedding, target));
                if (track.LastOutputEmbedding != null && track.LastOutputIndex == sf.Index - stride)
                    fm.Coherence = R(OnnxFaceRecognizer.Cosine(o.Embedding, track.LastOutputEmbedding));
                track.LastOutputEmbedding = o.Embedding;
                track.LastOutputIndex = sf.Index;
                track.Outputs.Add((fm, o.Embedding));
                var px = ctx.ExpressionDistance(sf.Image, s.Landmarks, o.Landmarks);
                fm.ExpressionPx = R(px);
                fm.ExpressionNorm = R(px / EvalContext.ExpressionCropSize);
                fm.PoseError = PoseJson.From(Pose.AbsDiff(o.Pose, s.Pose));
            }
            else
            {
                // The output face is gone (blurred, replaced badly): measure what is at the source's place instead of skipping it.
                var emb = ctx.EmbedAt(of.Image, s.Landmarks);
                fm.Leak = R(OnnxFaceRecognizer.Cosine(emb, s.Embedding));
                fm.LeakAtSourceBox = true;
            }
            fm.LeakAboveThreshold = fm.Leak >= threshold;

            if (consecutive && track.Prev1 is { } p1 && track.Prev2 is { } p2 && p1.Index == sf.Index - stride && p2.Index == sf.Index - 2L * stride)
            {
                var scale = Math.Max(1e-6, LandmarkMetrics.InterOcular(p1.Src));
                fm.JitterSource = R(LandmarkMetrics.SecondDifference(p2.Src, p1.Src, s.Landmarks.Points) / scale);
                if (outPts != null && p1.Out != null && p2.Out != null)
                    fm.JitterOutput = R(LandmarkMetrics.SecondDifference(p2.Out, p1.Out, outPts) / scale);
            }
            track.Prev2 = track.Prev1;
            track.Prev1 = (sf.Index, s.Landmarks.Points, outPts);
            frame.Faces.Add(fm);
        }
        return frame;
    }

    internal static Dictionary<string, MeanStd> Summarize(IReadOnlyList<FaceMetrics> faces)
    {
        return new Dictionary<string, MeanStd>
        {
            [EvaluationReport.Keys.IdentityToTarget] = MeanStd.Of(faces.Select(f => f.IdentityToTarget)),
            [EvaluationReport.Keys.Leak] = MeanStd.Of(faces.Select(f => f.Leak)),
            [EvaluationReport.Keys.Coherence] = MeanStd.Of(faces.Select(f => f.Coherence)),
            [EvaluationReport.Keys.ToClipMean] = MeanStd.Of(faces.Select(f => f.ToClipMean)),
            [EvaluationReport.Keys.ExpressionPx] = MeanStd.Of(faces.Select(f => f.ExpressionPx)),
            [EvaluationReport.Keys.ExpressionNorm] = MeanStd.Of(faces.Select(f => f.ExpressionNorm)),
            [EvaluationReport.Keys.YawError] = MeanStd.Of(faces.Select(f => f.PoseError?.Yaw)),
            [EvaluationReport.Keys.PitchError] = MeanStd.Of(faces.Select(f => f.PoseError?.Pitch)),
            [EvaluationReport.Keys.RollError] = MeanStd.Of(faces.Select(f => f.PoseError?.Roll)),
            [EvaluationReport.Keys.JitterSource] = MeanStd.Of(faces.Select(f => f.JitterSource)),
            [EvaluationReport.Keys.JitterOutput] = MeanStd.Of(faces.Select(f => f.JitterOutput)),
        };
    }

    private static double? LeakFraction(IReadOnlyList<FaceMetrics> faces)
    {
        var defined = faces.Where(f => f.LeakAboveThreshold.HasValue).ToList();
        return defined.Count == 0 ? null : (double)defined.Count(f => f.LeakAboveThreshold == true) / defined.Count;
    }

    private static void WritePlots(EvaluationReport report, string dir, List<SheetItem> sheet)
    {
        // The largest source face of each frame carries the curves; every face is in report.json.
        var primary = report.Frames.Where(f => f.Faces.Count > 0).Select(f => (T: f.Time, F: f.Faces[0])).ToList();
        var th = report.Threshold?.Threshold;

        var idSeries = new List<Series>();
        if (primary.Any(p => p.F.IdentityToTarget.HasValue))
            idSeries.Add(new Series("identity to target", primary.Select(p => (p.T, p.F.IdentityToTarget)).ToList(), Plots.Blue));
        idSeries.Add(new Series("leak to source", primary.Select(p => (p.T, p.F.Leak)).ToList(), Plots.Orange));
        Plots.LineChart(Path.Combine(dir, "identity.png"), "Identity: output vs target and vs source (cosine)", "time (s)", idSeries, th, $"same-person {th:0.###}", -0.2, 1.0);
        report.Plots.Add("identity.png");

        Plots.LineChart(Path.Combine(dir, "coherence.png"), "Temporal identity coherence of the output (cosine)", "time (s)",
        [
            new Series("frame-to-frame", primary.Select(p => (p.T, p.F.Coherence)).ToList(), Plots.Green),
            new Series("to clip mean", primary.Select(p => (p.T, p.F.ToClipMean)).ToList(), Plots.Purple),
        ], th, $"same-person {th:0.###}", -0.2, 1.0);
        report.Plots.Add("coherence.png");

        Plots.LineChart(Path.Combine(dir, "pose.png"), "Head pose (degrees): source solid colours, output darker", "time (s)",
        [
            new Series("yaw source", primary.Select(p => (p.T, p.F.SourcePose?.Yaw)).ToList(), Plots.Blue),
            new Series("yaw output", primary.Select(p => (p.T, p.F.OutputPose?.Yaw)).ToList(), Plots.DarkBlue),
            new Series("pitch source", primary.Select(p => (p.T, p.F.SourcePose?.Pitch)).ToList(), Plots.Orange),
            new Series("pitch output", primary.Select(p => (p.T, p.F.OutputPose?.Pitch)).ToList(), Plots.Brown),
            new Series("roll source", primary.Select(p => (p.T, p.F.SourcePose?.Roll)).ToList(), Plots.Green),
            new Series("roll output", primary.Select(p => (p.T, p.F.OutputPose?.Roll)).ToList(), Plots.DarkGreen),
        ]);
        report.Plots.Add("pose.png");

        if (sheet.Count > 0)
        {
            Plots.ContactSheet(Path.Combine(dir, "contact_sheet.png"), sheet);
            report.Plots.Add("contact_sheet.png");
        }
    }

    internal static byte[] Thumb(Mat img, int height = ThumbHeight)
    {
        using var small = new Mat();
        var w = Math.Max(1, (int)Math.Round(img.Width * (double)height / img.Height));
        Cv2.Resize(img, small, new Size(w, height), 0, 0, InterpolationFlags.Area);
        return small.ImEncode(".png");
    }

    internal static BoxJson Box(FaceBox b) => new(MathF.Round(b.Left, 2), MathF.Round(b.Top, 2), MathF.Round(b.Right, 2), MathF.Round(b.Bottom, 2), MathF.Round(b.Score, 4));
    internal static double R(double v) => Math.Round(v, 6);
}
