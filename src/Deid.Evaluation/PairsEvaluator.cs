using Deid.Faces;
using OpenCvSharp;

namespace Deid.Evaluation;

/// <summary>One (identity image, attribute image, output image) triple.</summary>
public sealed record ImageTriple(string Name, string Identity, string Attribute, string Output);

/// <summary>
/// Image-pair sets as in the paper's Table 1. Two layouts:
/// (a) triples of files in one folder: NAME_id.EXT, NAME_attr.EXT, NAME_out.EXT;
/// (b) subfolders id/, attr/, out/ holding files with the same base name.
/// </summary>
public static class PairsEvaluator
{
    public static List<ImageTriple> FindTriples(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"pairs folder not found: {dir}");
        var idDir = Path.Combine(dir, "id");
        var attrDir = Path.Combine(dir, "attr");
        var outDir = Path.Combine(dir, "out");
        var triples = new List<ImageTriple>();
        if (Directory.Exists(idDir) && Directory.Exists(attrDir) && Directory.Exists(outDir))
        {
            var ids = ByStem(idDir);
            var attrs = ByStem(attrDir);
            foreach (var (stem, outFile) in ByStem(outDir).OrderBy(k => k.Key, StringComparer.Ordinal))
            {
                if (!ids.TryGetValue(stem, out var id)) throw new ArgumentException($"pairs: out/{Path.GetFileName(outFile)} has no id/{stem}.* image");
                if (!attrs.TryGetValue(stem, out var attr)) throw new ArgumentException($"pairs: out/{Path.GetFileName(outFile)} has no attr/{stem}.* image");
                triples.Add(new ImageTriple(stem, id, attr, outFile));
            }
        }
        else
        {
            var files = ByStem(dir);
            foreach (var (stem, outFile) in files.Where(f => f.Key.EndsWith("_out", StringComparison.Ordinal)).OrderBy(k => k.Key, StringComparer.Ordinal))
            {
                var name = stem[..^4];
                if (!files.TryGetValue(name + "_id", out var id)) throw new ArgumentException($"pairs: {Path.GetFileName(outFile)} has no {name}_id.* image");
                if (!files.TryGetValue(name + "_attr", out var attr)) throw new ArgumentException($"pairs: {Path.GetFileName(outFile)} has no {name}_attr.* image");
                triples.Add(new ImageTriple(name, id, attr, outFile));
            }
        }
        if (triples.Count == 0)
            throw new ArgumentException($"no image triples in {dir}: expected NAME_id.*, NAME_attr.*, NAME_out.* files or id/, attr/, out/ subfolders");
        return triples;
    }

    private static Dictionary<string, string> ByStem(string dir)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var f in Directory.GetFiles(dir).Where(EvalContext.IsImage).Order(StringComparer.Ordinal))
            if (!d.TryAdd(Path.GetFileNameWithoutExtension(f), f))
                throw new ArgumentException($"pairs: two images named {Path.GetFileNameWithoutExtension(f)} in {dir}");
        return d;
    }

    public static EvaluationReport Evaluate(string dir, EvaluationOptions options, EvalContext ctx, string workDir, CancellationToken ct = default)
    {
        var triples = FindTriples(dir);
        var report = new EvaluationReport
        {
            Kind = "pairs", PairsDirectory = Path.GetFullPath(dir), Target = "each triple's identity image",
            ExpressionCropSize = EvalContext.ExpressionCropSize, Threshold = ctx.Threshold,
        };
        report.Warnings.AddRange(ctx.Warnings);
        var th = ctx.Threshold.Threshold;
        var sheet = new List<SheetItem>();
        foreach (var t in triples)
        {
            ct.ThrowIfCancellationRequested();
            using var idImg = Read(t.Identity);
            using var attrImg = Read(t.Attribute);
            using var outImg = Read(t.Output);
            var pm = new PairMetrics { Name = t.Name, IdentityImage = t.Identity, AttributeImage = t.Attribute, OutputImage = t.Output };
            var id = ctx.AnalyzeStill(idImg, fallbackWholeImage: true)!;
            var attr = ctx.AnalyzeStill(attrImg, fallbackWholeImage: true)!;
            var outFace = ctx.AnalyzeStill(outImg, fallbackWholeImage: false);
            var sameFrame = attrImg.Size() == outImg.Size();
            pm.AttributePose = PoseJson.From(attr.Pose);
            if (outFace != null)
            {
                pm.OutputDetected = true;
                pm.IdentityToTarget = VideoEvaluator.R(OnnxFaceRecognizer.Cosine(outFace.Embedding, id.Embedding));
                pm.Leak = VideoEvaluator.R(OnnxFaceRecognizer.Cosine(outFace.Embedding, attr.Embedding));
                pm.OutputPose = PoseJson.From(outFace.Pose);
                pm.PoseError = PoseJson.From(Pose.AbsDiff(outFace.Pose, attr.Pose));
                double px;
                if (sameFrame) px = ctx.ExpressionDistance(attrImg, attr.Landmarks, outFace.Landmarks);
                else
                {
                    // Different canvases (e.g. a photo and a 256² generated crop): each face in its own FFHQ crop.
                    using var a = ctx.Aligner.Align(attrImg, attr.Landmarks);
                    using var o = ctx.Aligner.Align(outImg, outFace.Landmarks);
                    px = LandmarkMetrics.MeanDistance(a.TransformToCrop(attr.Landmarks.Points), o.TransformToCrop(outFace.Landmarks.Points));
                    pm.Note = "attribute and output images differ in size: landmarks compared in each face's own FFHQ crop";
                }
                pm.ExpressionPx = VideoEvaluator.R(px);
                pm.ExpressionNorm = VideoEvaluator.R(px / EvalContext.ExpressionCropSize);
            }
            else
            {
                float[] emb;
                if (sameFrame) emb = ctx.EmbedAt(outImg, attr.Landmarks);
                else emb = ctx.AnalyzeStill(outImg, fallbackWholeImage: true)!.Embedding;
                pm.Leak = VideoEvaluator.R(OnnxFaceRecognizer.Cosine(emb, attr.Embedding));
                pm.Note = "no face detected in the output: leak measured " + (sameFrame ? "at the attribute face's place" : "on the whole output image");
            }
            pm.LeakAboveThreshold = pm.Leak >= th;
            report.Pairs.Add(pm);
            if (sheet.Count < Math.Max(options.ContactSheetFrames, 12))
                sheet.Add(new SheetItem(t.Name, VideoEvaluator.Thumb(attrImg, 128), VideoEvaluator.Thumb(outImg, 128)));
        }

        var faces = report.Pairs;
        report.Summary = new Dictionary<string, MeanStd>
        {
            [EvaluationReport.Keys.IdentityToTarget] = MeanStd.Of(faces.Select(f => f.IdentityToTarget)),
            [EvaluationReport.Keys.Leak] = MeanStd.Of(faces.Select(f => f.Leak)),
            [EvaluationReport.Keys.ExpressionPx] = MeanStd.Of(faces.Select(f => f.ExpressionPx)),
            [EvaluationReport.Keys.ExpressionNorm] = MeanStd.Of(faces.Select(f => f.ExpressionNorm)),
            [EvaluationReport.Keys.YawError] = MeanStd.Of(faces.Select(f => f.PoseError?.Yaw)),
            [EvaluationReport.Keys.PitchError] = MeanStd.Of(faces.Select(f => f.PoseError?.Pitch)),
            [EvaluationReport.Keys.RollError] = MeanStd.Of(faces.Select(f => f.PoseError?.Roll)),
        };
        report.LeakFraction = (double)faces.Count(f => f.LeakAboveThreshold == true) / faces.Count;
        report.Coverage = new CoverageSummary
        {
            FramesEvaluated = faces.Count, SourceFaces = faces.Count, MatchedFaces = faces.Count(f => f.OutputDetected),
            OutputFaces = faces.Count(f => f.OutputDetected), MissingFaces = faces.Count(f => !f.OutputDetected),
            FramesWithSourceFace = faces.Count, FramesWithOutputFace = faces.Count(f => f.OutputDetected),
            OutputDetectionRate = (double)faces.Count(f => f.OutputDetected) / faces.Count,
        };

        var xs = Enumerable.Range(0, faces.Count).ToList();
        Plots.LineChart(Path.Combine(workDir, "identity.png"), "Identity per triple: output vs identity image and vs attribute image (cosine)", "triple #",
        [
            new Series("identity to target", xs.Select(i => ((double)i, faces[i].IdentityToTarget)).ToList(), Plots.Blue),
            new Series("leak to attribute", xs.Select(i => ((double)i, faces[i].Leak)).ToList(), Plots.Orange),
        ], th, $"same-person {th:0.###}", -0.2, 1.0);
        report.Plots.Add("identity.png");
        Plots.ContactSheet(Path.Combine(workDir, "contact_sheet.png"), sheet);
        report.Plots.Add("contact_sheet.png");
        return report;
    }

    private static Mat Read(string path)
    {
        var m = Cv2.ImRead(path, ImreadModes.Color);
        if (m.Empty()) { m.Dispose(); throw new ArgumentException($"not a readable image: {path}"); }
        return m;
    }
}
