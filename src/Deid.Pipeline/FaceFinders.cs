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
/// predictor was trained on). One instance per detect worker.
/// </summary>
public interface IFaceFinder : IDisposable
{
    IReadOnlyList<FaceBox> Find(Mat bgr);
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

    /// <summary>
    /// Grey first, then shrunk, then padded: the same scan as padding the colour frame and shrinking that (what the
    /// detector sees is grey either way), without a padded full-size colour copy per frame.
    /// </summary>
    public IReadOnlyList<FaceBox> Find(Mat bgr)
    {
        int longSide = Math.Max(bgr.Width, bgr.Height);
        var pad = (int)Math.Round(EdgePadFraction * longSide);
        double scale = Math.Min(1.0, (double)MaxScanSide / (longSide + 2 * pad));
        using var grey = new Mat();
        if (bgr.Channels() == 1) bgr.CopyTo(grey);
        else Cv2.CvtColor(bgr, grey, bgr.Channels() == 4 ? ColorConversionCodes.BGRA2GRAY : ColorConversionCodes.BGR2GRAY);
        using var small = new Mat();
        var src = grey;
        if (scale < 1.0)
        {
            var size = new Size(Math.Max(1, (int)Math.Round(bgr.Width * scale)), Math.Max(1, (int)Math.Round(bgr.Height * scale)));
            Cv2.Resize(grey, small, size, 0, 0, InterpolationFlags.Area);
            src = small;
        }
        double sx = (double)bgr.Width / src.Width, sy = (double)bgr.Height / src.Height;
        var p = (int)Math.Round(pad * scale);
        using var image = new Mat();
        Cv2.CopyMakeBorder(src, image, p, p, p, p, BorderTypes.Constant, OpenCvSharp.Scalar.All(0));
        return _detector.Detect(image)
            .Select(b => b with { Left = (b.Left - p) * (float)sx, Right = (b.Right - p) * (float)sx, Top = (b.Top - p) * (float)sy, Bottom = (b.Bottom - p) * (float)sy })
            .ToList();
    }

    public void Dispose() => _detector.Dispose();
}

/// <summary>
/// SSD-MobileNetV1 on the frame, shrunk first so its long side is the network's 512 (OpenCV area resampling: the
/// network would otherwise sample a 1080p frame sparsely). Boxes are mapped to dlib's framing by
/// <see cref="ToDlibBox"/>. The network is shared by all workers; calls into it go through the one <see cref="DeviceExecutor"/> (it uses every core
/// through torch's own threads), the frame conversion around it is not.
/// On a frame much wider than tall (or taller than wide) the whole frame leaves a face few input pixels, where
/// SSD's score drops below its threshold (talk_1080p's speaker: 0.31-0.50 in its first 29 frames, 0.90-0.96 in a
/// square crop of the same frames). So such frames are also searched in overlapping square windows
/// (<see cref="Windows"/>); see <see cref="FindRaw"/> for how the finds are combined.
/// </summary>
public sealed class SsdFaceFinder(SsdMobilenetv1 net, DeviceExecutor device, float minConfidence = SsdMobilenetv1.DefaultMinConfidence) : IFaceFinder
{
    /// <summary>
    /// SSD box → dlib HOG box, as fractions of the SSD box: centre shift (x by width, y by height) and size.
    /// SSD boxes are taller than dlib's square ones and reach higher up the forehead, so dlib's sits lower and is
    /// shorter. Medians over 398 faces both detect (the five shared photos and every third frame of the six shared
    /// clips; per-source medians dy 0.07-0.17, sh 0.76-0.96). Landmarks predicted from the mapped box are
    /// 0.021 inter-ocular distances (mean; p95 0.047) from those predicted from dlib's own box, against 0.053
    /// (p95 0.181) from the raw SSD box.
    /// </summary>
    public static (float Dx, float Dy, float Sw, float Sh) DlibFromSsd { get; } = (0.02f, 0.08f, 1.05f, 0.89f);

    /// <summary>Long side / short side from which square windows are searched as well as the whole frame.</summary>
    public const double WindowAspect = 1.25;

    /// <summary>Two finds overlapping by this IoU or more are one face (the higher score is kept).</summary>
    public const float MergeIoU = 0.3f;

    public static FaceBox ToDlibBox(SsdFace f)
    {
        var (dx, dy, sw, sh) = DlibFromSsd;
        float cx = f.X + f.Width * (0.5f + dx), cy = f.Y + f.Height * (0.5f + dy);
        float hw = f.Width * sw / 2, hh = f.Height * sh / 2;
        return new FaceBox(cx - hw, cy - hh, cx + hw, cy + hh, f.Score);
    }

    public IReadOnlyList<FaceBox> Find(Mat bgr) => FindRaw(bgr).Select(ToDlibBox).ToList();

    /// <summary>
    /// Square windows (side = the frame's short side) along its long side, consecutive ones overlapping by at least
    /// half a side, the first and last flush with the frame's ends; none for a frame near square.
    /// </summary>
    public static IReadOnlyList<Rect> Windows(int width, int height)
    {
        int side = Math.Min(width, height), length = Math.Max(width, height);
        if (length < WindowAspect * side) return [];
        var count = (int)Math.Ceiling((length - side) / (side / 2.0)) + 1;
        var windows = new List<Rect>(count);
        for (var i = 0; i < count; i++)
        {
            var at = (int)Math.Round((double)i * (length - side) / (count - 1));
            windows.Add(width >= height ? new Rect(at, 0, side, side) : new Rect(0, at, side, side));
        }
        return windows;
    }

    /// <summary>
    /// The network's own boxes in frame coordinates (before the dlib mapping). The whole frame is searched, plus
    /// <see cref="Windows"/>; a window's find that touches one of its inner edges (a side inside the frame) is a cut
    /// face and dropped: the half-side overlap puts every face up to half a side wide whole in some window, and a
    /// larger one is large in the whole-frame input too. The rest are merged by score (<see cref="Merge"/>).
    /// </summary>
    public IReadOnlyList<SsdFace> FindRaw(Mat bgr)
    {
        var found = FindIn(bgr).ToList();
        foreach (var win in Windows(bgr.Width, bgr.Height))
        {
            using var view = new Mat(bgr, win);
            float margin = 0.01f * win.Width;
            foreach (var f in FindIn(view))
            {
                bool cut = (win.Left > 0 && f.X <= margin) || (win.Top > 0 && f.Y <= margin)
                    || (win.Right < bgr.Width && f.Right >= win.Width - margin)
                    || (win.Bottom < bgr.Height && f.Bottom >= win.Height - margin);
                if (!cut) found.Add(f with { X = f.X + win.X, Y = f.Y + win.Y });
            }
        }
        return Merge(found);
    }

    /// <summary>Strongest first; a find overlapping a stronger kept one by <see cref="MergeIoU"/> or more is dropped.</summary>
    public static List<SsdFace> Merge(IEnumerable<SsdFace> faces)
    {
        var kept = new List<SsdFace>();
        foreach (var f in faces.OrderByDescending(f => f.Score))
            if (!kept.Any(k => FaceBox.IoU(Box(k), Box(f)) >= MergeIoU)) kept.Add(f);
        return kept;

        static FaceBox Box(SsdFace f) => new(f.X, f.Y, f.Right, f.Bottom, f.Score);
    }

    /// <summary>One network pass over an image (a frame or a window of one), boxes in its pixels.</summary>
    private List<SsdFace> FindIn(Mat bgr)
    {
        var longSide = Math.Max(bgr.Width, bgr.Height);
        var scale = Math.Min(1.0, (double)SsdMobilenetv1.InputSize / longSide);
        using var rgb = new Mat();
        if (scale < 1)
        {
            using var small = new Mat();
            var size = new Size(Math.Max(1, (int)Math.Round(bgr.Width * scale)), Math.Max(1, (int)Math.Round(bgr.Height * scale)));
            Cv2.Resize(bgr, small, size, 0, 0, InterpolationFlags.Area);
            Cv2.CvtColor(small, rgb, ColorConversionCodes.BGR2RGB);
        }
        else Cv2.CvtColor(bgr, rgb, bgr.Channels() == 4 ? ColorConversionCodes.BGRA2RGB : ColorConversionCodes.BGR2RGB);
        var bytes = new byte[rgb.Width * rgb.Height * 3];
        if (rgb.IsContinuous()) System.Runtime.InteropServices.Marshal.Copy(rgb.Data, bytes, 0, bytes.Length);
        else for (var y = 0; y < rgb.Height; y++)
            System.Runtime.InteropServices.Marshal.Copy(rgb.Ptr(y), bytes, y * rgb.Width * 3, rgb.Width * 3);
        List<SsdFace> faces;
        using (var scope = torch.NewDisposeScope())
        {
            var t = torch.tensor(bytes, new long[] { 1, rgb.Height, rgb.Width, 3 }, torch.ScalarType.Byte).permute(0, 3, 1, 2);
            faces = device.Run(() => net.Detect(t, minConfidence)[0]);
        }
        double sx = (double)bgr.Width / rgb.Width, sy = (double)bgr.Height / rgb.Height;
        return faces.Select(f => new SsdFace((float)(f.X * sx), (float)(f.Y * sy), (float)(f.Width * sx), (float)(f.Height * sy), f.Score)).ToList();
    }

    public void Dispose() { }
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

/// <summary>Creates the detect workers' finders around the SSD network they share (the engine's, loaded once).</summary>
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

    private SsdMobilenetv1 Need() => ssd ?? throw new InvalidOperationException("the SSD detector was not loaded");

    /// <exception cref="PipelineException">the SSD weights are missing.</exception>
    public static SsdMobilenetv1 LoadSsd(string? modelDir, string device)
    {
        try { return SsdMobilenetv1.Load(modelDir, Deid.Models.DeviceSelection.Resolve(device)); }
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
