using System.Security.Cryptography;
using Microsoft.ML.OnnxRuntime;
using OpenCvSharp;

namespace Deid.Faces;

/// <summary>
/// The evaluation identity network: a 512-d ArcFace-style recognizer (faceplugin fr_feature.onnx, input 1×3×112×112 RGB,
/// (x−127)/128). It is deliberately not the network the anonymizer maps identities with, so identity scores are not
/// graded by the same judge that produced them.
/// </summary>
public sealed class OnnxFaceRecognizer : IDisposable
{
    public const int InputSize = 112;
    public const string RelativePath = "faceplugin/fr_feature.onnx";

    /// <summary>
    /// Same-person cosine threshold of this recognizer, calibrated on golden/face-api/people (8 people x 5 crops: balanced
    /// accuracy 100%; `deid evaluate` recalibrates when the set is present). Used wherever no calibration set is at hand.
    /// </summary>
    public const double SamePersonThreshold = 0.37;

    // The 5-point template of 112×112 ArcFace crops (eye centres, nose tip, mouth corners).
    private static readonly Point2f[] Template =
    [
        new(38.2946f, 51.6963f), new(73.5318f, 51.5014f), new(56.0252f, 71.7366f),
        new(41.5493f, 92.3655f), new(70.7299f, 92.2041f),
    ];

    private readonly InferenceSession _session;
    private readonly string _inputName;
    private readonly string _outputName;
    private readonly object _gate = new();

    public string ModelPath { get; }
    public string Sha256 { get; }
    public int Dimension { get; }

    private OnnxFaceRecognizer(string path)
    {
        ModelPath = Path.GetFullPath(path);
        Sha256 = Deid.Models.ModelStore.CheckBeforeLoad(path) ?? Deid.Models.ModelStore.Sha256Of(path);
        var opts = new SessionOptions { IntraOpNumThreads = Math.Max(1, Math.Min(4, Environment.ProcessorCount)), InterOpNumThreads = 1 };
        try { _session = new InferenceSession(path, opts); }
        catch (OnnxRuntimeException e) { throw new InvalidDataException($"cannot load the recognizer model {path}: {e.Message}", e); }
        _inputName = _session.InputMetadata.Keys.First();
        _outputName = _session.OutputMetadata.Keys.First();
        var outDims = _session.OutputMetadata[_outputName].Dimensions;
        Dimension = outDims.Length > 0 && outDims[^1] > 0 ? outDims[^1] : 512;
    }

    /// <summary>$DEID_MODELS (or models/ under the working directory) + faceplugin/fr_feature.onnx.</summary>
    public static string DefaultPath()
    {
        var root = Environment.GetEnvironmentVariable("DEID_MODELS") is { Length: > 0 } m ? m : Path.Combine(Directory.GetCurrentDirectory(), "models");
        return Path.Combine(root, RelativePath);
    }

    public static OnnxFaceRecognizer Load(string? path = null)
    {
        path ??= DefaultPath();
        if (!File.Exists(path))
            throw new FileNotFoundException($"recognizer model not found: {path} (run `deid models fetch`, or set DEID_MODELS)", path);
        return new OnnxFaceRecognizer(path);
    }

    public static string OnnxRuntimeVersion => OrtEnv.Instance().GetVersionString();

    /// <summary>Eye centres (mean of 4 lid points), nose tip, mouth corners (mean of outer and inner lip corner).</summary>
    public static Point2f[] FivePoints(IReadOnlyList<Point2f> lm)
    {
        if (lm.Count != 68) throw new ArgumentException("expected 68 landmarks", nameof(lm));
        static Point2f Mean(params Point2f[] p) => new(p.Average(q => q.X), p.Average(q => q.Y));
        return
        [
            Mean(lm[37], lm[38], lm[40], lm[41]),
            Mean(lm[43], lm[44], lm[46], lm[47]),
            lm[30],
            Mean(lm[48], lm[60]),
            Mean(lm[54], lm[64]),
        ];
    }

    /// <summary>Similarity transform (2×3, CV_64F) from the frame to the 112×112 template; least squares over the 5 points.</summary>
    public static Mat AlignTransform(IReadOnlyList<Point2f> landmarks68) => AlignFive(FivePoints(landmarks68));

    /// <summary>Similarity transform from five points (eye centres, nose tip, mouth corners) to the 112×112 template.</summary>
    public static Mat AlignFive(Point2f[] five)
    {
        if (five.Length != 5) throw new ArgumentException("expected 5 points", nameof(five));
        using var src = InputArray.Create(five);
        using var dst = InputArray.Create(Template);
        var m = Cv2.EstimateAffinePartial2D(src, dst, null, RobustEstimationAlgorithms.LMEDS);
        if (m is null || m.Empty()) throw new InvalidOperationException("cannot align the face for the recognizer");
        return m;
    }

    /// <summary>Aligns the face described by 68 landmarks and embeds it (L2-normalised).</summary>
    public float[] Embed(Mat bgr, IReadOnlyList<Point2f> landmarks68) => EmbedFive(bgr, FivePoints(landmarks68));

    /// <summary>
    /// Where the five points sit in an FFHQ-aligned crop, as fractions of its side: means over real faces aligned by
    /// <see cref="FfhqAligner"/> (talk clips and identity photos). For images that are aligned by construction, such
    /// as StyleGAN2's output, whose landmarks nobody measured.
    /// </summary>
    public static Point2f[] FfhqFivePoints(int size) =>
        [.. new (float X, float Y)[] { (0.364f, 0.472f), (0.621f, 0.471f), (0.501f, 0.611f), (0.407f, 0.744f), (0.591f, 0.742f) }
            .Select(p => new Point2f(p.X * size - 0.5f, p.Y * size - 0.5f))];

    /// <summary>Aligns the face by its five points and embeds it (L2-normalised).</summary>
    public float[] EmbedFive(Mat bgr, Point2f[] five)
    {
        using var m = AlignFive(five);
        using var crop = new Mat();
        Cv2.WarpAffine(bgr, crop, m, new Size(InputSize, InputSize), InterpolationFlags.Linear, BorderTypes.Replicate);
        return EmbedAligned(crop);
    }

    /// <summary>Embeds a crop that is already aligned to the template (resized to 112×112 if needed); BGR or grey.</summary>
    public float[] EmbedAligned(Mat crop)
    {
        using var bgr = new Mat();
        if (crop.Channels() == 1) Cv2.CvtColor(crop, bgr, ColorConversionCodes.GRAY2BGR);
        else if (crop.Channels() == 4) Cv2.CvtColor(crop, bgr, ColorConversionCodes.BGRA2BGR);
        else crop.CopyTo(bgr);
        if (bgr.Width != InputSize || bgr.Height != InputSize)
            Cv2.Resize(bgr, bgr, new Size(InputSize, InputSize), 0, 0, InterpolationFlags.Area);

        const int plane = InputSize * InputSize;
        var input = new float[3 * plane];
        if (!bgr.IsContinuous()) throw new InvalidOperationException("expected a continuous 112×112 image");
        var pixels = new byte[3 * plane];
        System.Runtime.InteropServices.Marshal.Copy(bgr.Data, pixels, 0, pixels.Length);
        for (var o = 0; o < plane; o++)
        {
            input[o] = (pixels[3 * o + 2] - 127f) / 128f;             // R
            input[plane + o] = (pixels[3 * o + 1] - 127f) / 128f;     // G
            input[2 * plane + o] = (pixels[3 * o] - 127f) / 128f;     // B
        }

        float[] result;
        lock (_gate)
        {
            using var value = OrtValue.CreateTensorValueFromMemory(input, [1, 3, InputSize, InputSize]);
            using var runOptions = new RunOptions();
            using var outputs = _session.Run(runOptions, [_inputName], [value], [_outputName]);
            result = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        return Normalize(result);
    }

    public static float[] Normalize(float[] v)
    {
        double n = 0;
        foreach (var x in v) n += (double)x * x;
        n = Math.Sqrt(n);
        if (n < 1e-12) return v;
        var r = new float[v.Length];
        for (var i = 0; i < v.Length; i++) r[i] = (float)(v[i] / n);
        return r;
    }

    public static double Cosine(float[] a, float[] b)
    {
        if (a.Length != b.Length) throw new ArgumentException("embedding sizes differ");
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++) { dot += (double)a[i] * b[i]; na += (double)a[i] * a[i]; nb += (double)b[i] * b[i]; }
        return na < 1e-24 || nb < 1e-24 ? 0 : dot / Math.Sqrt(na * nb);
    }

    /// <summary>Normalised mean of several embeddings (a clip's mean identity).</summary>
    public static float[] Mean(IEnumerable<float[]> embeddings)
    {
        float[]? sum = null;
        foreach (var e in embeddings)
        {
            sum ??= new float[e.Length];
            for (var i = 0; i < e.Length; i++) sum[i] += e[i];
        }
        return sum is null ? [] : Normalize(sum);
    }

    public void Dispose() => _session.Dispose();
}
