using OpenCvSharp;

namespace Deid.Faces;

/// <summary>dlib's frontal HOG face detector. Not thread-safe (dlib's scanner keeps scratch state): one per worker.</summary>
public sealed unsafe class DlibFaceDetector : IDisposable
{
    private const int MaxFaces = 256;
    private readonly DetectorHandle _handle;
    private readonly object _gate = new();

    /// <param name="upsample">dlib pyramid_up passes (each finds faces half as large, at 4x the cost).</param>
    /// <param name="maxSide">frames whose long side exceeds this are downscaled before detection; boxes are mapped back.</param>
    /// <param name="threshold">dlib's adjust_threshold: higher drops weak detections.</param>
    public DlibFaceDetector(int upsample = 0, int maxSide = 720, double threshold = 0)
    {
        if (upsample < 0 || upsample > 3) throw new ArgumentOutOfRangeException(nameof(upsample), "upsample must be 0..3");
        if (maxSide < 64) throw new ArgumentOutOfRangeException(nameof(maxSide), "maxSide must be at least 64");
        Upsample = upsample;
        MaxSide = maxSide;
        Threshold = threshold;
        Native.EnsureLoaded();
        _handle = Native.deid_detector_new();
        if (_handle.IsInvalid) throw new FaceException("cannot create the dlib face detector: " + Native.LastError());
    }

    /// <summary>The instruction set the loaded dlib shim was built for (avx2 where the CPU has it, else the x86-64 baseline).</summary>
    public static string Isa { get { Native.EnsureLoaded(); return Native.Simd; } }

    public int Upsample { get; }
    public int MaxSide { get; }
    public double Threshold { get; }

    /// <summary>Faces in a BGR (or grey/BGRA) 8-bit image, strongest first, in the image's pixel coordinates.</summary>
    /// <param name="maxLevels">Scan only this many pyramid levels (0: all): faces from dlib's 80 px window up to
    /// 80·1.2^(maxLevels − 1) px (of the image as detected, after <see cref="MaxSide"/> and upsampling): a search for
    /// a face of known size need not pay for the levels of larger ones.</param>
    public IReadOnlyList<FaceBox> Detect(Mat bgr, int maxLevels = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxLevels);
        ArgumentNullException.ThrowIfNull(bgr);
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        if (bgr.Empty()) throw new ArgumentException("cannot detect faces in an empty image", nameof(bgr));
        if (bgr.Depth() != MatType.CV_8U || bgr.Channels() is not (1 or 3 or 4))
            throw new ArgumentException($"face detection needs an 8-bit grey, BGR or BGRA image, got {bgr.Type()}", nameof(bgr));

        int longSide = Math.Max(bgr.Width, bgr.Height);
        double scale = longSide > MaxSide ? (double)MaxSide / longSide : 1.0;
        Mat? small = null;
        try
        {
            var src = bgr;
            if (scale < 1.0)
            {
                small = new Mat();
                var size = new Size(Math.Max(1, (int)Math.Round(bgr.Width * scale)), Math.Max(1, (int)Math.Round(bgr.Height * scale)));
                Cv2.Resize(bgr, small, size, 0, 0, InterpolationFlags.Area);
                src = small;
            }
            double sx = (double)bgr.Width / src.Width, sy = (double)bgr.Height / src.Height;
            var raw = new double[MaxFaces * 5];
            int n;
            lock (_gate)
            {
                fixed (double* outp = raw)
                    n = Native.deid_detect(_handle, (byte*)src.Data, src.Width, src.Height, (int)src.Step(), src.Channels(),
                        Upsample, Threshold, maxLevels, outp, MaxFaces);
            }
            if (n < 0) throw new FaceException("dlib face detection failed: " + Native.LastError());
            var faces = new List<FaceBox>(n);
            for (int i = 0; i < n; i++)
            {
                var box = new FaceBox((float)(raw[i * 5] * sx), (float)(raw[i * 5 + 1] * sy),
                    (float)(raw[i * 5 + 2] * sx), (float)(raw[i * 5 + 3] * sy), (float)raw[i * 5 + 4]);
                faces.Add(box);
            }
            faces.Sort((a, b) => b.Score.CompareTo(a.Score));
            return faces;
        }
        finally
        {
            small?.Dispose();
        }
    }

    /// <summary>
    /// HOG feature values (all 31 planes) the shim's table-driven features compute differently from dlib's own on an
    /// 8-bit grey image: as the detector's first pyramid level sees it (<paramref name="asPyramidLevel"/> false) or as
    /// a copy, as its lower levels are held. 0 is the contract (the detector's verdicts are then dlib's).
    /// </summary>
    internal static long FhogMismatches(Mat grey, bool asPyramidLevel, int padding)
    {
        if (grey.Type() != MatType.CV_8UC1) throw new ArgumentException($"expected an 8-bit grey image, got {grey.Type()}", nameof(grey));
        Native.EnsureLoaded();
        long n = Native.deid_fhog_mismatches((byte*)grey.Data, grey.Width, grey.Height, (int)grey.Step(), asPyramidLevel ? 1 : 0, padding);
        GC.KeepAlive(grey);
        if (n < 0) throw new FaceException("HOG feature comparison failed: " + Native.LastError());
        return n;
    }

    /// <summary>
    /// Saliency values the shim's separable filter (rows of zeros skipped) computes differently from dlib's own, over
    /// every filter bank of the face detector on this 8-bit grey image's HOG planes. 0 is the contract.
    /// </summary>
    internal static long FilterMismatches(Mat grey)
    {
        if (grey.Type() != MatType.CV_8UC1) throw new ArgumentException($"expected an 8-bit grey image, got {grey.Type()}", nameof(grey));
        Native.EnsureLoaded();
        long n = Native.deid_filter_mismatches((byte*)grey.Data, grey.Width, grey.Height, (int)grey.Step());
        GC.KeepAlive(grey);
        if (n < 0) throw new FaceException("HOG filter comparison failed: " + Native.LastError());
        return n;
    }

    public void Dispose() => _handle.Dispose();
}
