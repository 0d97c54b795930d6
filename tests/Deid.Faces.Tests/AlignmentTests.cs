using Deid.Faces;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Faces.Tests;

public class AlignmentTests
{
    private static FaceLandmarks Synthetic(Point2f eyeL, Point2f eyeR, Point2f mouthL, Point2f mouthR)
    {
        var pts = new Point2f[68];
        for (int i = 0; i < 68; i++) pts[i] = new Point2f(500, 500);
        for (int i = 36; i < 42; i++) pts[i] = eyeL;
        for (int i = 42; i < 48; i++) pts[i] = eyeR;
        pts[48] = mouthL;
        pts[54] = mouthR;
        return new FaceLandmarks(pts);
    }

    [Fact]
    public void QuadFollowsTheFfhqScript()
    {
        // eye_avg (120,100), eye_to_eye (40,0), eye_to_mouth (0,50): x = (90,0) scaled to max(80, 90) = 90,
        // y = (0,90), c = (120,105).
        var q = FfhqAligner.Quad(Synthetic(new(100, 100), new(140, 100), new(105, 150), new(135, 150)));
        Assert.Equal([new Point2f(30, 15), new Point2f(30, 195), new Point2f(210, 195), new Point2f(210, 15)], q);

        // Wide eyes: the eye distance sets the scale (2 * 60 = 120 > 1.8 * 50).
        q = FfhqAligner.Quad(Synthetic(new(90, 100), new(150, 100), new(105, 150), new(135, 150)));
        Assert.Equal([new Point2f(0, -15), new Point2f(0, 225), new Point2f(240, 225), new Point2f(240, -15)], q);
    }

    [Fact]
    public void QuadRotatesWithTheFace()
    {
        var lm = Synthetic(new(100, 100), new(140, 100), new(105, 150), new(135, 150));
        var rot = Cv2.GetRotationMatrix2D(new Point2f(120, 120), 30, 1.0);
        Point2f R(Point2f p) => new((float)(rot.At<double>(0, 0) * p.X + rot.At<double>(0, 1) * p.Y + rot.At<double>(0, 2)),
            (float)(rot.At<double>(1, 0) * p.X + rot.At<double>(1, 1) * p.Y + rot.At<double>(1, 2)));
        var q = FfhqAligner.Quad(lm);
        var qr = FfhqAligner.Quad(new FaceLandmarks(lm.Points.Select(R).ToArray()));
        for (int i = 0; i < 4; i++)
        {
            var e = R(q[i]);
            Assert.Equal(e.X, qr[i].X, 3);
            Assert.Equal(e.Y, qr[i].Y, 3);
        }
        // an oriented square
        double Side(Point2f a, Point2f b) => Math.Sqrt((a.X - b.X) * (a.X - b.X) + (a.Y - b.Y) * (a.Y - b.Y));
        Assert.Equal(180, Side(qr[0], qr[1]), 3);
        Assert.Equal(180, Side(qr[1], qr[2]), 3);
        Assert.Equal(180 * Math.Sqrt(2), Side(qr[0], qr[2]), 3);
    }

    [Fact]
    public void TransformsAreInverseAndMapQuadCornersToCropCorners()
    {
        using var det = new DlibFaceDetector();
        using var img = TestMedia.Read(TestMedia.Frames("talk_d3.mp4", 6, 60)[0]);
        var (_, lm) = TestMedia.Face(img, det);
        using var face = new FfhqAligner(256).Align(img, lm);
        Assert.Equal(256, face.Size);
        Assert.Equal(new Size(256, 256), face.Crop.Size());
        Assert.Equal(MatType.CV_8UC3, face.Crop.Type());
        Assert.Equal(MatType.CV_64FC1, face.FrameToCrop.Type());
        Assert.Equal(new Size(3, 2), face.CropToFrame.Size());
        // pixel edges of the crop (-0.5 and size - 0.5) lie on the quad corners
        var corners = face.TransformToCrop(face.Quad);
        Point2f[] expected = [new(-0.5f, -0.5f), new(-0.5f, 255.5f), new(255.5f, 255.5f), new(255.5f, -0.5f)];
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(expected[i].X, corners[i].X, 2);
            Assert.Equal(expected[i].Y, corners[i].Y, 2);
        }
        var back = face.TransformToFrame(face.TransformToCrop(lm.Points));
        for (int i = 0; i < 68; i++) Assert.True(back[i].DistanceTo(lm.Points[i]) < 1e-2);
        var r = face.FrameRegion;
        Assert.True(r.X >= 0 && r.Y >= 0 && r.Right <= img.Width && r.Bottom <= img.Height);
        foreach (var p in face.Quad)
        {
            var c = new Point2f(Math.Clamp(p.X, 0, img.Width - 1), Math.Clamp(p.Y, 0, img.Height - 1));
            Assert.True(c.X >= r.X && c.X <= r.Right && c.Y >= r.Y && c.Y <= r.Bottom);
        }
    }

    // The FFHQ definition (NVlabs ffhq-dataset, recreate_aligned_images), for a face whose mouth is centred below
    // its eyes at the proportions where both size rules agree (2·|eye_to_eye| = 1.8·|eye_to_mouth|): x has length
    // s = 2e, the crop side is 2s = 4e, c = eye_avg + 0.1·eye_to_mouth is the crop centre. In units of the crop
    // side the eyes then sit at x = 1/2 ∓ e/(2·4e) = 0.375, 0.625 and y = 1/2 − 0.1·m/4e = 1/2 − 1/36; the mouth
    // centre at y = 1/2 + 0.9·m/4e = 3/4. Mouth corners 0.8·e apart sit at x = 1/2 ∓ 0.1.
    private static readonly (double X, double Y)[] CanonicalQuadUnit =
    [
        (0.375, 0.5 - 1 / 36.0), (0.625, 0.5 - 1 / 36.0), (0.6, 0.75), (0.4, 0.75), // eye L, eye R, mouth R, mouth L
    ];

    /// <summary>The canonical quad placed in a frame: eye distance e, turned by angle degrees about (cx, cy).</summary>
    private static Point2f[] CanonicalQuadInFrame(double e, double angle, double cx, double cy)
    {
        double side = 4 * e, a = angle * Math.PI / 180, cos = Math.Cos(a), sin = Math.Sin(a);
        return CanonicalQuadUnit.Select(q =>
        {
            double u = (q.X - 0.5) * side, v = (q.Y - 0.5) * side;
            return new Point2f((float)(cx + cos * u - sin * v), (float)(cy + sin * u + cos * v));
        }).ToArray();
    }

    private static Point2f CropPixel((double X, double Y) unit, int size) => new((float)(unit.X * size - 0.5), (float)(unit.Y * size - 0.5));

    public static TheoryData<int, double> Placements => new()
    {
        { 256, 20 },   // crop ≈ 0.6× the face: one cubic warp
        { 64, -35 },   // far smaller: the area-shrink path first
        { 1024, 0 },   // larger: upsampling
    };

    [Theory]
    [MemberData(nameof(Placements))]
    public void TheFfhqQuadOfEyesAndMouthLandsOnTheCanonicalQuad(int size, double angle)
    {
        // A face drawn as four dots (eye centres, mouth corners) at the canonical proportions, turned and scaled.
        const double e = 100;
        var quad = CanonicalQuadInFrame(e, angle, 430, 380);
        var lm = Synthetic(quad[0], quad[1], quad[3], quad[2]);
        using var img = new Mat(800, 900, MatType.CV_8UC3, Scalar.All(40));
        foreach (var p in quad) Cv2.Circle(img, new Point((int)Math.Round(p.X * 16), (int)Math.Round(p.Y * 16)), 8 * 16, Scalar.All(255), -1, LineTypes.AntiAlias, shift: 4);

        using var face = new FfhqAligner(size).Align(img, lm);
        var expected = CanonicalQuadUnit.Select(q => CropPixel(q, size)).ToArray();

        // The transform puts the landmarks exactly there ...
        var mapped = face.TransformToCrop(quad);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(expected[i].X, mapped[i].X, 0.01);
            Assert.Equal(expected[i].Y, mapped[i].Y, 0.01);
        }
        // ... and so do the pixels: the dots' centroids in the crop, to a tenth of a crop pixel (an offset slip of
        // half a pixel in the warp or the area shrink would show here; measured errors are below 0.05).
        var found = DotCentroids(face.Crop);
        Assert.Equal(4, found.Count);
        const double tol = 0.1;
        foreach (var x in expected)
        {
            var nearest = found.MinBy(f => f.DistanceTo(x));
            Assert.True(nearest.DistanceTo(x) < tol, $"dot at {nearest}, the FFHQ definition puts it at {x} (size {size})");
        }
    }

    private static List<Point2f> DotCentroids(Mat crop)
    {
        using var grey = crop.CvtColor(ColorConversionCodes.BGR2GRAY);
        using var mask = grey.Threshold(140, 255, ThresholdTypes.Binary);
        using var labels = new Mat();
        using var stats = new Mat();
        using var centroids = new Mat();
        var n = Cv2.ConnectedComponentsWithStats(mask, labels, stats, centroids);
        var result = new List<Point2f>();
        for (int k = 1; k < n; k++)
        {
            // Intensity-weighted centroid over the component's box (the dot's soft edge counts by its brightness).
            var r = new Rect(stats.At<int>(k, 0) - 2, stats.At<int>(k, 1) - 2, stats.At<int>(k, 2) + 4, stats.At<int>(k, 3) + 4)
                .Intersect(new Rect(0, 0, crop.Width, crop.Height));
            double sw = 0, sx = 0, sy = 0;
            for (int y = r.Top; y < r.Bottom; y++)
                for (int x = r.Left; x < r.Right; x++)
                {
                    double w = Math.Max(0, grey.At<byte>(y, x) - 40);
                    sw += w; sx += w * x; sy += w * y;
                }
            result.Add(new Point2f((float)(sx / sw), (float)(sy / sw)));
        }
        return result;
    }

    public static TheoryData<string, int, int, int> Sources => new()
    {
        { "talk_d3.mp4", 6, 60, 256 },
        { "talk_1080p.mp4", 2, 60, 256 }, // face far larger than the crop: area-shrink path
        { "talk_small.mp4", 2, 80, 512 },  // face smaller than the crop: upsampling
        { "talk_d13_portrait_noaudio.mp4", 2, 100, 256 },
    };

    [Theory]
    [MemberData(nameof(Sources))]
    public void RealFacesAreResampledWhereTheFfhqDefinitionPutsThem(string video, int count, int every, int size)
    {
        using var det = new DlibFaceDetector();
        var aligner = new FfhqAligner(size);
        foreach (var file in TestMedia.Frames(video, count, every))
        {
            using var img = TestMedia.Read(file);
            var (_, lm) = TestMedia.Face(img, det);
            using var face = aligner.Align(img, lm);
            var (eyeL, eyeR, mouth) = FfhqDefinitionInCrop(lm.Points, size);

            // dlib finds the face again in the crop, with its eyes and mouth where the definition says they are.
            using var cropDet = new DlibFaceDetector(upsample: size < 300 ? 1 : 0);
            var boxes = cropDet.Detect(face.Crop);
            Assert.NotEmpty(boxes);
            var again = TestMedia.Predictor.Predict(face.Crop, boxes[0]).Points;
            double tol = 0.03 * size;
            Assert.True(Mean(again, 36, 42).DistanceTo(eyeL) < tol, $"{file}: re-detected left eye {Mean(again, 36, 42)} vs {eyeL}");
            Assert.True(Mean(again, 42, 48).DistanceTo(eyeR) < tol, $"{file}: re-detected right eye {Mean(again, 42, 48)} vs {eyeR}");
            var mouthAgain = new Point2f((again[48].X + again[54].X) / 2, (again[48].Y + again[54].Y) / 2);
            Assert.True(mouthAgain.DistanceTo(mouth) < 1.5 * tol, $"{file}: re-detected mouth {mouthAgain} vs {mouth}");
        }
    }

    /// <summary>
    /// Eye centres and mouth centre of a face in its aligned crop, computed from the FFHQ script's own steps
    /// (written out here apart from FfhqAligner): each point's offset from c along x and y, over |x|.
    /// </summary>
    private static (Point2f EyeL, Point2f EyeR, Point2f Mouth) FfhqDefinitionInCrop(Point2f[] lm, int size)
    {
        (double X, double Y) M(int from, int to) => (lm[from..to].Average(p => (double)p.X), lm[from..to].Average(p => (double)p.Y));
        var eyeL = M(36, 42);
        var eyeR = M(42, 48);
        var eyeAvg = (X: (eyeL.X + eyeR.X) / 2, Y: (eyeL.Y + eyeR.Y) / 2);
        var e2e = (X: eyeR.X - eyeL.X, Y: eyeR.Y - eyeL.Y);
        var mouth = (X: (lm[48].X + lm[54].X) / 2.0, Y: (lm[48].Y + lm[54].Y) / 2.0);
        var e2m = (X: mouth.X - eyeAvg.X, Y: mouth.Y - eyeAvg.Y);
        // x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1]; x /= hypot(x); x *= max(2·hypot(e2e), 1.8·hypot(e2m))
        var x = (X: e2e.X + e2m.Y, Y: e2e.Y - e2m.X);
        var len = Math.Sqrt(x.X * x.X + x.Y * x.Y);
        var s = Math.Max(2 * Math.Sqrt(e2e.X * e2e.X + e2e.Y * e2e.Y), 1.8 * Math.Sqrt(e2m.X * e2m.X + e2m.Y * e2m.Y));
        x = (x.X / len * s, x.Y / len * s);
        var y = (X: -x.Y, Y: x.X); // flipud(x) * [-1, 1]
        var c = (X: eyeAvg.X + 0.1 * e2m.X, Y: eyeAvg.Y + 0.1 * e2m.Y);
        // quad = [c - x - y, c - x + y, c + x + y, c + x - y] spans the crop: u = (1 + (p - c)·x / s²) / 2, v likewise along y.
        Point2f Crop((double X, double Y) p)
        {
            double dx = p.X - c.X, dy = p.Y - c.Y;
            double u = (1 + (dx * x.X + dy * x.Y) / (s * s)) / 2, v = (1 + (dx * y.X + dy * y.Y) / (s * s)) / 2;
            return CropPixel((u, v), size);
        }
        return (Crop(eyeL), Crop(eyeR), Crop(mouth));
    }

    [Fact]
    public void ACropOnlyToBeBlurredIsTheSharpCropWithinAFewLevels()
    {
        // Faces from 5× to 18× the crop's size: shrunk by halvings and a bilinear warp instead of one area step by
        // the whole factor and a cubic warp, the picture a blur starts from is the same.
        using var det = new DlibFaceDetector();
        foreach (var (file, size) in new[] { (TestMedia.Frames("talk_d3.mp4", 2, 60)[1], 64), (TestMedia.Frames("talk_1080p.mp4", 1, 60)[0], 32) })
        {
            using var img = TestMedia.Read(file);
            var (_, lm) = TestMedia.Face(img, det);
            using var sharp = new FfhqAligner(size).Align(img, lm);
            using var soft = new FfhqAligner(size, sharp: false).Align(img, lm);
            Assert.Equal(sharp.FrameRegion, soft.FrameRegion);
            using var diff = new Mat();
            Cv2.Absdiff(sharp.Crop, soft.Crop, diff);
            var mean = Cv2.Mean(diff);
            Assert.True(mean.Val0 + mean.Val1 + mean.Val2 < 3 * 4, $"{file} at {size}: mean difference {mean}");
        }
    }

    [Fact]
    public void FaceAtTheFrameEdgeIsPaddedByReflection()
    {
        using var det = new DlibFaceDetector();
        using var img = TestMedia.Read(TestMedia.Frames("talk_d3.mp4", 6, 60)[0]);
        var (box, lm) = TestMedia.Face(img, det);
        // cut the frame through the middle of the face
        var cut = new Rect((int)box.CenterX, 0, img.Width - (int)box.CenterX, img.Height);
        using var part = new Mat(img, cut);
        var shifted = new FaceLandmarks(lm.Points.Select(p => new Point2f(p.X - cut.X, p.Y)).ToArray());
        using var face = new FfhqAligner(128).Align(part, shifted);
        Assert.Equal(0, face.FrameRegion.X);
        Cv2.MeanStdDev(face.Crop, out _, out var std);
        Assert.True(std.Val0 > 5, "the padded crop is not flat");
        using var left = new Mat(face.Crop, new Rect(0, 0, 20, 128));
        Assert.True(Cv2.Mean(left).Val0 > 1, "no black border");
    }

    [Fact]
    public void RejectsBadInput()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new FfhqAligner(4));
        var lm = Synthetic(new(10, 10), new(10, 10), new(10, 10), new(10, 10));
        Assert.Contains("degenerate", Assert.Throws<ArgumentException>(() => FfhqAligner.Quad(lm)).Message);
        using var grey = new Mat(100, 100, MatType.CV_8UC1, Scalar.All(0));
        var ok = Synthetic(new(40, 40), new(60, 40), new(42, 70), new(58, 70));
        Assert.Throws<ArgumentException>(() => new FfhqAligner().Align(grey, ok));
    }

    internal static Point2f Mean(Point2f[] p, int from, int to)
    {
        float x = 0, y = 0;
        for (int i = from; i < to; i++) { x += p[i].X; y += p[i].Y; }
        return new Point2f(x / (to - from), y / (to - from));
    }
}
