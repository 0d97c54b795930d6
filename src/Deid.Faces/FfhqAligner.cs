using OpenCvSharp;

namespace Deid.Faces;

/// <summary>
/// FFHQ alignment: the oriented square that NVlabs' ffhq-dataset derives from the eyes and mouth corners,
/// resampled to Size x Size with one affine warp (reflecting the frame where the square leaves it, as FFHQ pads).
/// </summary>
public sealed class FfhqAligner
{
    public FfhqAligner(int size = 256)
    {
        if (size < 16 || size > 4096) throw new ArgumentOutOfRangeException(nameof(size), "aligned crop size must be 16..4096");
        Size = size;
    }

    public int Size { get; }

    /// <summary>The 4 corners (top-left, bottom-left, bottom-right, top-right of the crop) in frame coordinates.</summary>
    public static Point2f[] Quad(FaceLandmarks landmarks)
    {
        ArgumentNullException.ThrowIfNull(landmarks);
        var lm = landmarks.Points;
        var eyeLeft = Mean(lm, 36, 42);
        var eyeRight = Mean(lm, 42, 48);
        var eyeAvg = (eyeLeft + eyeRight) * 0.5;
        var eyeToEye = eyeRight - eyeLeft;
        var mouthAvg = (ToD(lm[48]) + ToD(lm[54])) * 0.5;
        var eyeToMouth = mouthAvg - eyeAvg;

        // x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1]
        var x = new Point2d(eyeToEye.X + eyeToMouth.Y, eyeToEye.Y - eyeToMouth.X);
        double len = Math.Sqrt(x.X * x.X + x.Y * x.Y);
        if (!(len > 1e-6)) throw new ArgumentException("degenerate landmarks: eyes and mouth coincide", nameof(landmarks));
        x *= 1.0 / len;
        x *= Math.Max(Hypot(eyeToEye) * 2.0, Hypot(eyeToMouth) * 1.8);
        var y = new Point2d(-x.Y, x.X); // flipud(x) * [-1, 1]
        var c = eyeAvg + eyeToMouth * 0.1;
        return
        [
            ToF(c - x - y), ToF(c - x + y), ToF(c + x + y), ToF(c + x - y),
        ];
    }

    /// <summary>Resamples the face into an aligned Size x Size BGR crop.</summary>
    public AlignedFace Align(Mat frame, FaceLandmarks landmarks)
    {
        ArgumentNullException.ThrowIfNull(frame);
        if (frame.Empty()) throw new ArgumentException("cannot align a face in an empty frame", nameof(frame));
        if (frame.Type() != MatType.CV_8UC3) throw new ArgumentException($"alignment needs a BGR 8-bit frame, got {frame.Type()}", nameof(frame));
        var quad = Quad(landmarks);
        var cropToFrame = CropToFrameMatrix(quad, Size);
        var frameToCrop = new Mat();
        Cv2.InvertAffineTransform(cropToFrame, frameToCrop);

        // Work only on the part of the frame under the quad; when the face is much larger than the crop,
        // an area shrink first avoids the aliasing a single bilinear/cubic warp would produce.
        var region = RegionOf(quad, frame.Width, frame.Height, margin: 0);
        double scale = Distance(quad[0], quad[3]) / Size;
        int k = scale >= 2 ? (int)Math.Floor(scale) : 1;
        var src = RegionOf(quad, frame.Width, frame.Height, margin: 2 + 2 * k);
        var crop = new Mat();
        using (var roi = new Mat(frame, src))
        using (var shrunk = new Mat())
        {
            var input = roi;
            double sx = 1, sy = 1;
            if (k > 1)
            {
                var sz = new Size(Math.Max(1, (int)Math.Round((double)src.Width / k)), Math.Max(1, (int)Math.Round((double)src.Height / k)));
                Cv2.Resize(roi, shrunk, sz, 0, 0, InterpolationFlags.Area);
                input = shrunk;
                sx = (double)sz.Width / src.Width;
                sy = (double)sz.Height / src.Height;
            }
            // crop → input pixel: q = (p - tl + 0.5) * s - 0.5 applied after cropToFrame.
            using var m = new Mat(2, 3, MatType.CV_64FC1);
            for (int col = 0; col < 3; col++)
            {
                m.Set(0, col, cropToFrame.At<double>(0, col) * sx);
                m.Set(1, col, cropToFrame.At<double>(1, col) * sy);
            }
            m.Set(0, 2, (cropToFrame.At<double>(0, 2) - src.X + 0.5) * sx - 0.5);
            m.Set(1, 2, (cropToFrame.At<double>(1, 2) - src.Y + 0.5) * sy - 0.5);
            Cv2.WarpAffine(input, crop, m, new Size(Size, Size), InterpolationFlags.Cubic | InterpolationFlags.WarpInverseMap, BorderTypes.Reflect101);
        }
        return new AlignedFace(crop, frameToCrop, cropToFrame, quad, region);
    }

    /// <summary>
    /// Mean positions of the 68 dlib landmarks in an aligned crop of this size. Measured by aligning real faces
    /// (talk clips and identity photos) and averaging their landmarks; stored in units of the crop side.
    /// </summary>
    public static Point2f[] CanonicalLandmarks(int size)
    {
        if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size));
        var pts = new Point2f[FaceLandmarks.Count];
        for (int i = 0; i < pts.Length; i++)
            pts[i] = new Point2f(CanonicalUnit[2 * i] * size - 0.5f, CanonicalUnit[2 * i + 1] * size - 0.5f);
        return pts;
    }

    /// <summary>Crop pixel (u, v) → frame pixel, pixel centres at integers (PIL's QUAD transform of quad + 0.5, as FFHQ).</summary>
    public static Mat CropToFrameMatrix(Point2f[] quad, int size)
    {
        double ax = (quad[3].X - quad[0].X) / (double)size, ay = (quad[3].Y - quad[0].Y) / (double)size;
        double bx = (quad[1].X - quad[0].X) / (double)size, by = (quad[1].Y - quad[0].Y) / (double)size;
        var m = new Mat(2, 3, MatType.CV_64FC1);
        m.Set(0, 0, ax); m.Set(0, 1, bx); m.Set(0, 2, quad[0].X + 0.5 * (ax + bx));
        m.Set(1, 0, ay); m.Set(1, 1, by); m.Set(1, 2, quad[0].Y + 0.5 * (ay + by));
        return m;
    }

    internal static Rect RegionOf(Point2f[] quad, int width, int height, int margin)
    {
        float l = quad.Min(p => p.X), r = quad.Max(p => p.X), t = quad.Min(p => p.Y), b = quad.Max(p => p.Y);
        int x0 = Math.Clamp((int)MathF.Floor(l) - margin, 0, width), y0 = Math.Clamp((int)MathF.Floor(t) - margin, 0, height);
        int x1 = Math.Clamp((int)MathF.Ceiling(r) + 1 + margin, 0, width), y1 = Math.Clamp((int)MathF.Ceiling(b) + 1 + margin, 0, height);
        if (x1 <= x0 || y1 <= y0) throw new ArgumentException("the face lies outside the frame");
        return new Rect(x0, y0, x1 - x0, y1 - y0);
    }

    private static Point2d Mean(Point2f[] p, int from, int to)
    {
        double x = 0, y = 0;
        for (int i = from; i < to; i++) { x += p[i].X; y += p[i].Y; }
        return new Point2d(x / (to - from), y / (to - from));
    }

    private static Point2d ToD(Point2f p) => new(p.X, p.Y);
    private static Point2f ToF(Point2d p) => new((float)p.X, (float)p.Y);
    private static double Hypot(Point2d p) => Math.Sqrt(p.X * p.X + p.Y * p.Y);
    private static double Distance(Point2f a, Point2f b) => Math.Sqrt((a.X - b.X) * (a.X - b.X) + (a.Y - b.Y) * (a.Y - b.Y));

    // (x + 0.5) / size, (y + 0.5) / size of each of the 68 points, averaged over 51 faces aligned from the talk
    // clips and identity photos in ../shared/media (CanonicalGenerator in the tests regenerates it).
    private static readonly float[] CanonicalUnit =
    [
        0.2172f, 0.4759f, 0.2207f, 0.5500f, 0.2297f, 0.6239f, 0.2441f, 0.6968f,
        0.2693f, 0.7648f, 0.3102f, 0.8259f, 0.3643f, 0.8753f, 0.4272f, 0.9133f,
        0.4982f, 0.9245f, 0.5678f, 0.9116f, 0.6281f, 0.8709f, 0.6793f, 0.8196f,
        0.7181f, 0.7580f, 0.7425f, 0.6895f, 0.7572f, 0.6178f, 0.7683f, 0.5449f,
        0.7732f, 0.4714f, 0.2764f, 0.4152f, 0.3116f, 0.3841f, 0.3593f, 0.3743f,
        0.4086f, 0.3786f, 0.4544f, 0.3976f, 0.5444f, 0.3971f, 0.5906f, 0.3785f,
        0.6406f, 0.3734f, 0.6879f, 0.3829f, 0.7213f, 0.4149f, 0.5012f, 0.4615f,
        0.5013f, 0.5115f, 0.5012f, 0.5606f, 0.5013f, 0.6107f, 0.4450f, 0.6464f,
        0.4721f, 0.6560f, 0.5007f, 0.6636f, 0.5294f, 0.6559f, 0.5559f, 0.6457f,
        0.3326f, 0.4732f, 0.3622f, 0.4594f, 0.3960f, 0.4598f, 0.4276f, 0.4791f,
        0.3944f, 0.4854f, 0.3606f, 0.4849f, 0.5731f, 0.4779f, 0.6043f, 0.4587f,
        0.6379f, 0.4583f, 0.6670f, 0.4715f, 0.6398f, 0.4841f, 0.6060f, 0.4839f,
        0.3992f, 0.7442f, 0.4364f, 0.7203f, 0.4730f, 0.7077f, 0.5010f, 0.7150f,
        0.5283f, 0.7080f, 0.5643f, 0.7192f, 0.5986f, 0.7414f, 0.5652f, 0.7758f,
        0.5303f, 0.7927f, 0.5001f, 0.7961f, 0.4700f, 0.7930f, 0.4339f, 0.7773f,
        0.4155f, 0.7439f, 0.4727f, 0.7341f, 0.5011f, 0.7364f, 0.5286f, 0.7337f,
        0.5825f, 0.7419f, 0.5287f, 0.7544f, 0.5003f, 0.7583f, 0.4720f, 0.7550f
    ];
}

/// <summary>An aligned crop and the transforms between it and the frame it came from.</summary>
public sealed class AlignedFace : IDisposable
{
    public AlignedFace(Mat crop, Mat frameToCrop, Mat cropToFrame, Point2f[] quad, Rect frameRegion)
    {
        Crop = crop;
        FrameToCrop = frameToCrop;
        CropToFrame = cropToFrame;
        Quad = quad;
        FrameRegion = frameRegion;
    }

    /// <summary>Size x Size BGR.</summary>
    public Mat Crop { get; }
    /// <summary>2x3 CV_64F affine: frame pixel → crop pixel.</summary>
    public Mat FrameToCrop { get; }
    /// <summary>2x3 CV_64F affine: crop pixel → frame pixel.</summary>
    public Mat CropToFrame { get; }
    public Point2f[] Quad { get; }
    /// <summary>Bounding box of the crop in the frame, clipped to the frame.</summary>
    public Rect FrameRegion { get; }
    public int Size => Crop.Width;

    public Point2f[] TransformToCrop(Point2f[] framePoints) => Apply(FrameToCrop, framePoints);
    public Point2f[] TransformToFrame(Point2f[] cropPoints) => Apply(CropToFrame, cropPoints);

    private static Point2f[] Apply(Mat m, Point2f[] pts)
    {
        ArgumentNullException.ThrowIfNull(pts);
        double a = m.At<double>(0, 0), b = m.At<double>(0, 1), c = m.At<double>(0, 2);
        double d = m.At<double>(1, 0), e = m.At<double>(1, 1), f = m.At<double>(1, 2);
        var r = new Point2f[pts.Length];
        for (int i = 0; i < pts.Length; i++)
            r[i] = new Point2f((float)(a * pts[i].X + b * pts[i].Y + c), (float)(d * pts[i].X + e * pts[i].Y + f));
        return r;
    }

    public void Dispose()
    {
        Crop.Dispose();
        FrameToCrop.Dispose();
        CropToFrame.Dispose();
    }
}
