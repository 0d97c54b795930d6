using OpenCvSharp;

namespace Deid.Faces;

/// <summary>
/// FFHQ alignment: the oriented square that NVlabs' ffhq-dataset derives from the eyes and mouth corners,
/// resampled to Size x Size with one affine warp (reflecting the frame where the square leaves it, as FFHQ pads).
/// </summary>
public sealed class FfhqAligner
{
    /// <param name="size">crop side in pixels.</param>
    /// <param name="sharp">
    /// Cubic resampling (what a network reads; the default). Without it, bilinear: for crops that are only blurred or
    /// pixelated, where a cubic kernel keeps nothing that survives, at about a third of the warp's cost.
    /// </param>
    public FfhqAligner(int size = 256, bool sharp = true)
    {
        if (size < 16 || size > 4096) throw new ArgumentOutOfRangeException(nameof(size), "aligned crop size must be 16..4096");
        Size = size;
        Sharp = sharp;
    }

    public int Size { get; }
    public bool Sharp { get; }

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
        // A sharp crop (a generated face will replace this one) is shrunk by the whole factor under the scale, the warp
        // left to minify by under 1 + 1/k. One only blurred or pixelated is shrunk by the power of two under it, in
        // halvings: OpenCV's vectorised 2× path, a third of the cost of one area step by another factor; the warp's
        // bilinear minification by up to 2× leaves aliasing far finer than the blur keeps.
        double scale = Distance(quad[0], quad[3]) / Size;
        int k = scale < 2 ? 1 : Sharp ? (int)Math.Floor(scale) : 1 << (int)Math.Floor(Math.Log2(scale));
        var src = RegionOf(quad, frame.Width, frame.Height, margin: 2 + 2 * k);
        if (k > 1) src = WholeMultiple(src, k, frame.Width, frame.Height);
        var crop = new Mat();
        using (var roi = new Mat(frame, src))
        using (var shrunk = new Mat())
        {
            var input = roi;
            double sx = 1, sy = 1;
            if (k > 1)
            {
                var sz = new Size(Math.Max(1, (int)Math.Round((double)src.Width / k)), Math.Max(1, (int)Math.Round((double)src.Height / k)));
                // Halvings where src is a whole multiple of k (WholeMultiple makes it one unless the frame is smaller).
                if (Sharp || src.Width % k != 0 || src.Height % k != 0) Cv2.Resize(roi, shrunk, sz, 0, 0, InterpolationFlags.Area);
                else
                {
                    Cv2.Resize(roi, shrunk, new Size(roi.Width / 2, roi.Height / 2), 0, 0, InterpolationFlags.Area);
                    for (int f = 4; f <= k; f *= 2)
                        Cv2.Resize(shrunk, shrunk, new Size(roi.Width / f, roi.Height / f), 0, 0, InterpolationFlags.Area);
                }
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
            Cv2.WarpAffine(input, crop, m, new Size(Size, Size), (Sharp ? InterpolationFlags.Cubic : InterpolationFlags.Linear) | InterpolationFlags.WarpInverseMap, BorderTypes.Reflect101);
        }
        return new AlignedFace(crop, frameToCrop, cropToFrame, quad, region);
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

    /// <summary>
    /// The region grown (or, where it spans the frame, cut) to whole multiples of k on both sides, so its area shrink
    /// by k takes OpenCV's whole-factor path: the general one builds a weight table per pixel and cost several times
    /// as much. The region keeps at least its 2 + 2k px margin but for under k px where it meets the frame's edge.
    /// </summary>
    internal static Rect WholeMultiple(Rect r, int k, int width, int height)
    {
        (int X, int W) Fit(int x, int w, int limit)
        {
            int up = (w + k - 1) / k * k;
            if (up <= limit) return (Math.Clamp(x - (up - w) / 2, 0, limit - up), up);
            int down = Math.Max(k, w / k * k);
            return (Math.Clamp(x + (w - down) / 2, 0, Math.Max(0, limit - down)), Math.Min(down, limit));
        }
        var (x, w) = Fit(r.X, r.Width, width);
        var (y, h) = Fit(r.Y, r.Height, height);
        return new Rect(x, y, w, h);
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
