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

    public static TheoryData<string, int, int, int> Sources => new()
    {
        { "talk_d3.mp4", 6, 60, 256 },
        { "talk_1080p.mp4", 2, 60, 256 }, // face far larger than the crop: area-shrink path
        { "talk_small.mp4", 2, 80, 512 },  // face smaller than the crop: upsampling
        { "talk_d13_portrait_noaudio.mp4", 2, 100, 256 },
    };

    [Theory]
    [MemberData(nameof(Sources))]
    public void AlignedFacesSitAtTheCanonicalPositions(string video, int count, int every, int size)
    {
        using var det = new DlibFaceDetector();
        var aligner = new FfhqAligner(size);
        var canon = FfhqAligner.CanonicalLandmarks(size);
        var canonEyeL = Mean(canon, 36, 42); var canonEyeR = Mean(canon, 42, 48);
        var canonMouth = Mean(canon, 48, 68);
        double tol = 0.03 * size;
        foreach (var file in TestMedia.Frames(video, count, every))
        {
            using var img = TestMedia.Read(file);
            var (_, lm) = TestMedia.Face(img, det);
            using var face = aligner.Align(img, lm);

            // transformed frame landmarks
            var t = face.TransformToCrop(lm.Points);
            Assert.True(Mean(t, 36, 42).DistanceTo(canonEyeL) < tol, $"{file}: left eye {Mean(t, 36, 42)} vs {canonEyeL}");
            Assert.True(Mean(t, 42, 48).DistanceTo(canonEyeR) < tol, $"{file}: right eye");
            Assert.True(Mean(t, 48, 68).DistanceTo(canonMouth) < tol, $"{file}: mouth");

            // landmarks found again by dlib in the crop itself: the pixels really were resampled there
            using var cropDet = new DlibFaceDetector(upsample: size < 300 ? 1 : 0);
            var boxes = cropDet.Detect(face.Crop);
            Assert.NotEmpty(boxes);
            var again = TestMedia.Predictor.Predict(face.Crop, boxes[0]).Points;
            Assert.True(Mean(again, 36, 42).DistanceTo(canonEyeL) < tol, $"{file}: re-detected left eye {Mean(again, 36, 42)} vs {canonEyeL}");
            Assert.True(Mean(again, 42, 48).DistanceTo(canonEyeR) < tol, $"{file}: re-detected right eye");
            Assert.True(Mean(again, 48, 68).DistanceTo(canonMouth) < 1.5 * tol, $"{file}: re-detected mouth {Mean(again, 48, 68)} vs {canonMouth}");
        }
    }

    [Fact]
    public void CanonicalLandmarksScaleWithSize()
    {
        var a = FfhqAligner.CanonicalLandmarks(256);
        var b = FfhqAligner.CanonicalLandmarks(1024);
        Assert.Equal(68, a.Length);
        for (int i = 0; i < 68; i++)
        {
            Assert.Equal((a[i].X + 0.5) * 4, b[i].X + 0.5, 2);
            Assert.Equal((a[i].Y + 0.5) * 4, b[i].Y + 0.5, 2);
        }
        // FFHQ geometry: eyes level and symmetric about the centre, mouth below them
        var eyeL = Mean(b, 36, 42); var eyeR = Mean(b, 42, 48); var mouth = Mean(b, 48, 68);
        Assert.Equal(512, (eyeL.X + eyeR.X) / 2, 5.0);
        Assert.Equal(eyeL.Y, eyeR.Y, 5.0);
        Assert.InRange(mouth.Y - eyeL.Y, 200, 330);
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
