using OpenCvSharp;

namespace Deid.Faces;

/// <summary>dlib's 68-point shape predictor. Immutable once loaded, so one instance serves every thread.</summary>
public sealed unsafe class DlibShapePredictor : IDisposable
{
    public const string FileName = "shape_predictor_68_face_landmarks.dat";
    public const string SystemPath = "/usr/share/dlib/" + FileName;

    private readonly PredictorHandle _handle;

    private DlibShapePredictor(PredictorHandle handle, string path)
    {
        _handle = handle;
        Path = path;
    }

    /// <summary>The .dat file this predictor was loaded from.</summary>
    public string Path { get; }

    /// <summary>$DEID_MODELS/shape_predictor_68_face_landmarks.dat when present, else Debian's libdlib-data copy.</summary>
    public static string DefaultPath()
    {
        if (Environment.GetEnvironmentVariable("DEID_MODELS") is { Length: > 0 } models)
        {
            var candidate = System.IO.Path.Combine(models, FileName);
            if (File.Exists(candidate)) return candidate;
        }
        return SystemPath;
    }

    /// <summary>
    /// Loads the model (about 65 MB in memory; do it once and share the instance). The shim evaluates dlib's trees
    /// from a flat copy of them, with dlib's landmarks bit for bit (see flat_shape_predictor in the shim).
    /// </summary>
    public static DlibShapePredictor Load(string? path = null) => Load(path, dlibReference: false);

    /// <summary>dlib's own shape_predictor on the same file: the reference the parity test holds the flat one to.</summary>
    internal static DlibShapePredictor LoadDlibReference(string path) => Load(path, dlibReference: true);

    private static DlibShapePredictor Load(string? path, bool dlibReference)
    {
        path = System.IO.Path.GetFullPath(path ?? DefaultPath());
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"dlib 68-point model not found at {path}; install Debian's libdlib-data or run `deid models fetch`", path);
        Deid.Models.ModelStore.CheckBeforeLoad(path);
        Native.EnsureLoaded();
        var handle = Native.deid_predictor_load(path, dlibReference ? 1 : 0);
        if (handle.IsInvalid)
        {
            handle.Dispose();
            throw new FaceException($"cannot load the dlib 68-point model {path}: {Native.LastError()}");
        }
        return new DlibShapePredictor(handle, path);
    }

    /// <summary>The 68 landmarks of the face in <paramref name="box"/> (frame coordinates).</summary>
    public FaceLandmarks Predict(Mat bgr, FaceBox box)
    {
        ArgumentNullException.ThrowIfNull(bgr);
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        if (bgr.Empty()) throw new ArgumentException("cannot find landmarks in an empty image", nameof(bgr));
        if (bgr.Depth() != MatType.CV_8U || bgr.Channels() is not (1 or 3 or 4))
            throw new ArgumentException($"landmarks need an 8-bit grey, BGR or BGRA image, got {bgr.Type()}", nameof(bgr));
        if (!(box.Width > 1 && box.Height > 1) || !float.IsFinite(box.Left) || !float.IsFinite(box.Top))
            throw new ArgumentException($"invalid face box {box}", nameof(box));

        // The shim reads grey pixels in place; a generous window round the box holds every pixel the regression trees
        // sample, so a colour frame costs a grey conversion of that window only (OpenCV's, vectorised; same BT.601
        // fixed-point weights as the shim's own conversion), not of the whole frame per face.
        float mx = box.Width, my = box.Height;
        int x0 = Math.Clamp((int)MathF.Floor(box.Left - mx), 0, bgr.Width - 1);
        int y0 = Math.Clamp((int)MathF.Floor(box.Top - my), 0, bgr.Height - 1);
        int x1 = Math.Clamp((int)MathF.Ceiling(box.Right + mx), x0 + 1, bgr.Width);
        int y1 = Math.Clamp((int)MathF.Ceiling(box.Bottom + my), y0 + 1, bgr.Height);
        using var window = new Mat(bgr, new Rect(x0, y0, x1 - x0, y1 - y0));
        using var grey = bgr.Channels() == 1 ? null : GreyImage.From(window);
        var src = grey ?? window;

        var xy = new float[FaceLandmarks.Count * 2];
        int n;
        fixed (float* outp = xy)
            n = Native.deid_predict(_handle, (byte*)src.Data, src.Width, src.Height, (int)src.Step(), 1,
                box.Left - x0, box.Top - y0, box.Right - x0, box.Bottom - y0, outp, FaceLandmarks.Count);
        if (n < 0) throw new FaceException("dlib landmark prediction failed: " + Native.LastError());
        if (n != FaceLandmarks.Count)
            throw new FaceException($"{Path} is not a 68-point model (it predicts {n} points)");
        var pts = new Point2f[FaceLandmarks.Count];
        for (int i = 0; i < pts.Length; i++) pts[i] = new Point2f(xy[2 * i] + x0, xy[2 * i + 1] + y0);
        return new FaceLandmarks(pts);
    }

    public void Dispose() => _handle.Dispose();
}
