using Deid.Faces;
using Deid.Models.FaceApi;
using OpenCvSharp;
using TorchSharp;

namespace Deid.Pipeline;

/// <summary>Which face detector the detect stage runs.</summary>
public enum DetectorKind
{
    /// <summary>dlib's frontal HOG detector (default).</summary>
    Hog,
    /// <summary>face-api.js's SSD-MobileNetV1 (TorchSharp port), boxes mapped to dlib's framing.</summary>
    Ssd,
    /// <summary>Both; a face either finds is processed (overlapping finds are merged).</summary>
    Both,
}

/// <summary>
/// Finds face boxes in one BGR frame, in frame coordinates and in dlib's HOG framing (what the 68-point shape
/// predictor was trained on). Not thread-safe: one instance per worker (a stream finder: per stream, frames in order).
/// </summary>
public interface IFaceFinder : IDisposable
{
    IReadOnlyList<FaceBox> Find(Mat bgr);

    /// <summary>
    /// Find reads only the frame's grey levels: it may be handed the frame in 8-bit grey instead of BGR, made once
    /// per frame for it and for the shape predictor after it.
    /// </summary>
    bool ReadsGrey => false;
}

/// <summary>dlib HOG on the frame with a black margin, so faces cut by the frame edge are found too.</summary>
public sealed class HogFaceFinder : IFaceFinder
{
    /// <summary>
    /// Black margin added around each frame before detection, as a fraction of its long side: HOG only scores
    /// windows that lie inside the image, so without it a face cut by the frame edge is never found.
    /// </summary>
    public const double EdgePadFraction = 0.08;

    /// <summary>Long side of the padded image HOG scans; larger frames are shrunk to it (faces below 80 px at that scale are missed).</summary>
    public static readonly int MaxScanSide = (int)Math.Round(720 * (1 + 2 * EdgePadFraction));

    // The finder hands the detector an image already at scan size, so the detector never rescales.
    private readonly DlibFaceDetector _detector = new(maxSide: int.MaxValue);

    public bool ReadsGrey => true;

    public IReadOnlyList<FaceBox> Find(Mat bgr)
    {
        using var scan = new HogScanImage(bgr);
        return _detector.Detect(scan.Image).Select(scan.ToFrame).ToList();
    }

    public void Dispose() => _detector.Dispose();
}

/// <summary>
/// What HOG scans for one frame: grey first, then shrunk to <see cref="HogFaceFinder.MaxScanSide"/>, then padded with
/// black by <see cref="HogFaceFinder.EdgePadFraction"/> (the same scan as padding the colour frame and shrinking that,
/// without a padded full-size colour copy per frame), and the way back to frame coordinates.
/// </summary>
public sealed class HogScanImage : IDisposable
{
    public Mat Image { get; } = new();
    /// <summary>The black margin in scan pixels.</summary>
    public int Pad { get; }
    /// <summary>Frame pixels per scan pixel.</summary>
    public double Sx { get; }
    public double Sy { get; }

    public HogScanImage(Mat bgr)
    {
        int longSide = Math.Max(bgr.Width, bgr.Height);
        var pad = (int)Math.Round(HogFaceFinder.EdgePadFraction * longSide);
        double scale = Math.Min(1.0, (double)HogFaceFinder.MaxScanSide / (longSide + 2 * pad));
        using var converted = bgr.Channels() == 1 ? null : GreyImage.From(bgr);
        var grey = converted ?? bgr;
        using var small = new Mat();
        var src = grey;
        if (scale < 1.0)
        {
            AreaShrink(grey, small, new Size(Math.Max(1, (int)Math.Round(bgr.Width * scale)), Math.Max(1, (int)Math.Round(bgr.Height * scale))));
            src = small;
        }
        Sx = (double)bgr.Width / src.Width;
        Sy = (double)bgr.Height / src.Height;
        Pad = (int)Math.Round(pad * scale);
        Cv2.CopyMakeBorder(src, Image, Pad, Pad, Pad, Pad, BorderTypes.Constant, OpenCvSharp.Scalar.All(0));
    }

    /// <summary>
    /// Area resampling to a smaller size, halving first while the target is at most half the size: OpenCV's area
    /// resampling has a fast path for whole factors, and its general one (a weight table per pixel) then works on a
    /// quarter of the pixels or less (a 1080p frame to scan size, a tracked face's window shrunk to its scale).
    /// </summary>
    public static void AreaShrink(Mat src, Mat dst, Size size)
    {
        if (src.Width < 2 * size.Width || src.Height < 2 * size.Height)
        {
            Cv2.Resize(src, dst, size, 0, 0, InterpolationFlags.Area);
            return;
        }
        // Halved from its even part: an odd side would make the factor a little over 2, which OpenCV takes by its
        // general path (several times the cost of the rest together). The dropped last column or row moves the
        // result by under one source pixel at that edge.
        using var even = new Mat(src, new Rect(0, 0, src.Width & ~1, src.Height & ~1));
        using var half = new Mat();
        Cv2.Resize(even, half, new Size(even.Width / 2, even.Height / 2), 0, 0, InterpolationFlags.Area);
        AreaShrink(half, dst, size);
    }

    public FaceBox ToFrame(FaceBox b) =>
        b with { Left = (float)((b.Left - Pad) * Sx), Right = (float)((b.Right - Pad) * Sx), Top = (float)((b.Top - Pad) * Sy), Bottom = (float)((b.Bottom - Pad) * Sy) };

    public void Dispose() => Image.Dispose();
}

/// <summary>
/// HOG and SSD together. Fail-closed for privacy: every face either finds is kept; a pair overlapping by IoU ≥
/// <see cref="MergeIoU"/> is one face, framed by the HOG box (the framing the shape predictor was trained on).
/// </summary>
public sealed class UnionFaceFinder(IFaceFinder hog, IFaceFinder ssd) : IFaceFinder
{
    public const float MergeIoU = 0.3f;

    public IReadOnlyList<FaceBox> Find(Mat bgr) => Merge(hog.Find(bgr), ssd.Find(bgr));

    public static List<FaceBox> Merge(IReadOnlyList<FaceBox> primary, IReadOnlyList<FaceBox> secondary)
    {
        var result = primary.ToList();
        foreach (var s in secondary)
            if (!primary.Any(p => FaceBox.IoU(p, s) >= MergeIoU)) result.Add(s);
        return result;
    }

    public void Dispose() { hog.Dispose(); ssd.Dispose(); }
}

/// <summary>Creates face finders around the SSD network they share (the engine's, loaded once): one per stream, or per still image.</summary>
public sealed class FaceFinderFactory(DetectorKind kind, SsdMobilenetv1? ssd, DeviceExecutor device,
    float minConfidence = SsdMobilenetv1.DefaultMinConfidence)
{
    public DetectorKind Kind { get; } = kind;

    public IFaceFinder Create() => Kind switch
    {
        DetectorKind.Hog => new HogFaceFinder(),
        DetectorKind.Ssd => new SsdFaceFinder(Need(), device, minConfidence),
        _ => new UnionFaceFinder(new HogFaceFinder(), new SsdFaceFinder(Need(), device, minConfidence)),
    };

    /// <summary>
    /// A finder for one video's frames in order (<see cref="HogStreamFinder"/>, <see cref="SsdStreamFinder"/>): it
    /// searches each frame only where the previous ones leave a face possible. One per stream, never shared.
    /// </summary>
    public IFaceFinder CreateForStream() => Kind switch
    {
        DetectorKind.Hog => new HogStreamFinder(),
        DetectorKind.Ssd => new SsdStreamFinder(Need(), device, minConfidence),
        _ => new UnionFaceFinder(new HogStreamFinder(), new SsdStreamFinder(Need(), device, minConfidence)),
    };

    private SsdMobilenetv1 Need() => ssd ?? throw new InvalidOperationException("the SSD detector was not loaded");

    /// <param name="modelDir">The model store (default <c>$DEID_MODELS</c> or models/), as for every other model; the weights are in its face-api folder.</param>
    /// <exception cref="PipelineException">the SSD weights are missing.</exception>
    public static SsdMobilenetv1 LoadSsd(string? modelDir, string device)
    {
        var dir = Deid.Models.ModelStore.FaceApiDir(new Deid.Models.ModelStore(modelDir).Root);
        try { return SsdMobilenetv1.Load(dir, Deid.Models.DeviceSelection.Resolve(device)); }
        catch (FileNotFoundException e)
        {
            throw new PipelineException($"the SSD face detector's weights are missing ({e.FileName}); run `deid models fetch`, or use --detector hog", e);
        }
    }

    public static DetectorKind Parse(string? s) => (s ?? "hog").Trim().ToLowerInvariant() switch
    {
        "hog" => DetectorKind.Hog,
        "ssd" => DetectorKind.Ssd,
        "both" => DetectorKind.Both,
        _ => throw new ArgumentException($"unknown detector '{s}' (expected hog, ssd or both)"),
    };
}
