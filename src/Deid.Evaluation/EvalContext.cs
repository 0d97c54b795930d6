using System.Diagnostics;
using System.Reflection;
using System.Security.Cryptography;
using Deid.Faces;
using OpenCvSharp;

namespace Deid.Evaluation;

public sealed record EvaluationOptions
{
    /// <summary>Evaluate every Nth frame (1 = all).</summary>
    public int Stride { get; init; } = 1;
    /// <summary>A photo of the target identity, "seed:N" (a generated identity, which has no photo to compare with), or null.</summary>
    public string? Target { get; init; }
    /// <summary>Folder of people/NAME/*.png used to calibrate the same-person threshold; null = find ../shared/golden/face-api/people.</summary>
    public string? CalibrationDirectory { get; init; }
    public string? RecognizerPath { get; init; }
    public string? PredictorPath { get; init; }
    /// <summary>How many sampled frames go on the contact sheet.</summary>
    public int ContactSheetFrames { get; init; } = 8;
    public string? DeidVersion { get; init; }
}

/// <summary>One analysed face: detector box, 68 landmarks, recognizer embedding, head pose.</summary>
public sealed record FaceObservation(FaceBox Box, FaceLandmarks Landmarks, float[] Embedding, Pose Pose);

/// <summary>
/// The networks an evaluation run shares: detector, landmark predictor, FFHQ aligner, recognizer, threshold.
/// The evaluation is the anonymizer's judge, so it deliberately does not find faces through the pipeline's
/// <c>FaceImageService</c>/detect stage: it scans whole frames with its own HOG settings (upsampling small images,
/// no speed shortcuts), so a face the pipeline's detector misses is not missed by its judge for the same reason.
/// </summary>
public sealed class EvalContext : IDisposable
{
    /// <summary>Used when no calibration set can be found: the value calibrated on face-api's 8 people with this recognizer.</summary>
    public const double FallbackThreshold = OnnxFaceRecognizer.SamePersonThreshold;
    public const int ExpressionCropSize = 256;

    public OnnxFaceRecognizer Recognizer { get; }
    public DlibFaceDetector Detector { get; }
    /// <summary>Upsampling detector for small still images (face crops, 256² outputs), where faces are near HOG's 80 px minimum.</summary>
    public DlibFaceDetector SmallImageDetector { get; }
    public DlibShapePredictor Predictor { get; }
    public FfhqAligner Aligner { get; } = new(ExpressionCropSize);
    public ThresholdInfo Threshold { get; private set; } = null!;
    public List<string> Warnings { get; } = [];

    private EvalContext(EvaluationOptions options)
    {
        Recognizer = OnnxFaceRecognizer.Load(options.RecognizerPath);
        try
        {
            Predictor = DlibShapePredictor.Load(options.PredictorPath);
            Detector = new DlibFaceDetector(upsample: 0);
            SmallImageDetector = new DlibFaceDetector(upsample: 1);
        }
        catch
        {
            Recognizer.Dispose();
            Predictor?.Dispose();
            Detector?.Dispose();
            throw;
        }
    }

    public static EvalContext Create(EvaluationOptions options)
    {
        var ctx = new EvalContext(options);
        try
        {
            ctx.Threshold = ctx.Calibrate(options.CalibrationDirectory);
            return ctx;
        }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    /// <summary>Every face in the image, largest first.</summary>
    public List<FaceObservation> Analyze(Mat bgr, bool smallImage = false)
    {
        var boxes = (smallImage ? SmallImageDetector : Detector).Detect(bgr).OrderByDescending(b => b.Area).ToList();
        var list = new List<FaceObservation>(boxes.Count);
        foreach (var b in boxes) list.Add(Observe(bgr, b));
        return list;
    }

    public FaceObservation Observe(Mat bgr, FaceBox box)
    {
        var lm = Predictor.Predict(bgr, box);
        var emb = Recognizer.Embed(bgr, lm.Points);
        var pose = HeadPose.Estimate(lm.Points, bgr.Width, bgr.Height);
        return new FaceObservation(box, lm, emb, pose);
    }

    /// <summary>Landmarks of both faces mapped into the reference face's FFHQ crop; mean distance in crop pixels.</summary>
    public double ExpressionDistance(Mat referenceImage, FaceLandmarks reference, FaceLandmarks other)
    {
        using var aligned = Aligner.Align(referenceImage, reference);
        var a = aligned.TransformToCrop(reference.Points);
        var b = aligned.TransformToCrop(other.Points);
        return LandmarkMetrics.MeanDistance(a, b);
    }

    /// <summary>Embeds the face of one image in the place of another's landmarks: measures a blurred face instead of skipping it.</summary>
    public float[] EmbedAt(Mat image, FaceLandmarks landmarks) => Recognizer.Embed(image, landmarks.Points);

    /// <summary>A still photo's largest face; the image is padded first because tight crops leave the detector no context.</summary>
    public FaceObservation? AnalyzeStill(Mat bgr, bool fallbackWholeImage)
    {
        var faces = Analyze(bgr, smallImage: Math.Max(bgr.Width, bgr.Height) < 800);
        if (faces.Count > 0) return faces[0];
        var padX = bgr.Width / 4;
        var padY = bgr.Height / 4;
        using var padded = new Mat();
        Cv2.CopyMakeBorder(bgr, padded, padY, padY, padX, padX, BorderTypes.Replicate);
        var boxes = SmallImageDetector.Detect(padded);
        FaceBox box;
        if (boxes.Count > 0)
        {
            var b = boxes.OrderByDescending(x => x.Area).First();
            box = new FaceBox(b.Left - padX, b.Top - padY, b.Right - padX, b.Bottom - padY, b.Score);
        }
        else if (fallbackWholeImage)
        {
            // An aligned face crop: dlib's detector box is roughly the brows-to-chin square, i.e. most of the crop.
            box = new FaceBox(bgr.Width * 0.08f, bgr.Height * 0.12f, bgr.Width * 0.92f, bgr.Height * 0.96f, 0);
        }
        else return null;
        return Observe(bgr, box);
    }

    private ThresholdInfo Calibrate(string? dir)
    {
        dir ??= FindCalibrationDirectory();
        if (dir is null || !Directory.Exists(dir))
        {
            Warnings.Add($"no calibration set found (../shared/golden/face-api/people); using the fixed threshold {FallbackThreshold}");
            return new ThresholdInfo(FallbackThreshold, double.NaN, double.NaN, 0, 0, double.NaN, double.NaN, 0, 0, "fixed (no calibration set found)");
        }
        var items = new List<(string, float[])>();
        foreach (var person in Directory.GetDirectories(dir).Order(StringComparer.Ordinal))
            foreach (var file in Directory.GetFiles(person).Where(IsImage).Order(StringComparer.Ordinal))
            {
                using var img = Cv2.ImRead(file, ImreadModes.Color);
                if (img.Empty()) continue;
                var face = AnalyzeStill(img, fallbackWholeImage: true)!;
                items.Add((Path.GetFileName(person), face.Embedding));
            }
        return ThresholdCalibration.Calibrate(items, Path.GetFullPath(dir));
    }

    public static bool IsImage(string path) =>
        Path.GetExtension(path).ToLowerInvariant() is ".png" or ".jpg" or ".jpeg" or ".bmp" or ".webp" or ".tif" or ".tiff";

    /// <summary>$DEID_SHARED/golden/face-api/people, else shared/golden/face-api/people beside the working directory or one of its parents.</summary>
    public static string? FindCalibrationDirectory()
    {
        var rel = Path.Combine("golden", "face-api", "people");
        if (Environment.GetEnvironmentVariable("DEID_SHARED") is { Length: > 0 } s && Directory.Exists(Path.Combine(s, rel)))
            return Path.Combine(s, rel);
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
            {
                var candidate = Path.Combine(d.FullName, "shared", rel);
                if (Directory.Exists(candidate)) return candidate;
            }
        return null;
    }

    public ToolVersions Versions(string? deidVersion)
    {
        var v = new ToolVersions
        {
            Deid = deidVersion ?? DeidVersion(),
            Ffmpeg = FfmpegVersion(),
            OnnxRuntime = OnnxFaceRecognizer.OnnxRuntimeVersion,
        };
        v.Models["recognizer"] = new ModelInfo(Recognizer.ModelPath, Recognizer.Sha256);
        v.Models["landmarks"] = new ModelInfo(Path.GetFullPath(Predictor.Path), Sha256Of(Predictor.Path));
        return v;
    }

    public static string DeidVersion()
    {
        var asm = Assembly.GetEntryAssembly() ?? typeof(EvalContext).Assembly;
        return asm.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? asm.GetName().Version?.ToString() ?? "unknown";
    }

    public static string? FfmpegVersion()
    {
        try
        {
            var exe = Environment.GetEnvironmentVariable("DEID_FFMPEG") is { Length: > 0 } p ? p : "ffmpeg";
            using var proc = Process.Start(new ProcessStartInfo(exe, "-hide_banner -version") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false });
            if (proc is null) return null;
            var first = proc.StandardOutput.ReadLine();
            proc.StandardOutput.ReadToEnd();
            proc.WaitForExit();
            return first?.Trim();
        }
        catch (System.ComponentModel.Win32Exception) { return null; }
    }

    private static readonly Dictionary<string, string> ShaCache = [];
    public static string Sha256Of(string path)
    {
        var full = Path.GetFullPath(path);
        lock (ShaCache)
        {
            if (ShaCache.TryGetValue(full, out var h)) return h;
            using var fs = File.OpenRead(full);
            h = Convert.ToHexStringLower(SHA256.HashData(fs));
            ShaCache[full] = h;
            return h;
        }
    }

    public void Dispose()
    {
        Recognizer.Dispose();
        Detector?.Dispose();
        SmallImageDetector?.Dispose();
        Predictor?.Dispose();
    }
}
