using Deid.Faces;
using Deid.TestSupport;
using OpenCvSharp;

namespace Deid.Faces.Tests;

public class PasteTests
{
    public static TheoryData<string, BlendMode, int> Cases => new()
    {
        { "talk_d3.mp4", BlendMode.Feather, 256 },
        { "talk_d3.mp4", BlendMode.ColorMatch, 256 },
        { "talk_small.mp4", BlendMode.ColorMatch, 256 },
        { "talk_1080p.mp4", BlendMode.ColorMatch, 256 },
        { "talk_d3.mp4", BlendMode.Poisson, 256 },
    };

    private static string FrameOf(string video) => video switch
    {
        "talk_1080p.mp4" => TestMedia.Frames(video, 2, 60)[1],
        "talk_small.mp4" => TestMedia.Frames(video, 2, 80)[1],
        _ => TestMedia.Frames(video, 6, 60)[2],
    };

    /// <summary>Pixels of the frame under the head mask (alpha &gt; 0.5), as an 8-bit mask of the full frame.</summary>
    private static Mat HeadPixels(Mat frame, AlignedFace face)
    {
        using var alpha = new Mat();
        Cv2.WarpAffine(FacePaster.HeadMask(face.Size), alpha, face.CropToFrame, frame.Size(), InterpolationFlags.Linear, BorderTypes.Constant);
        using var bin = new Mat();
        Cv2.Threshold(alpha, bin, 0.5, 255, ThresholdTypes.Binary);
        var m = new Mat();
        bin.ConvertTo(m, MatType.CV_8UC1);
        return m;
    }

    private static Mat Outside(Mat frame, Rect region)
    {
        var m = new Mat(frame.Size(), MatType.CV_8UC1, Scalar.All(255));
        m[region].SetTo(Scalar.All(0));
        return m;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PastingTheUnmodifiedCropBackChangesAlmostNothing(string video, BlendMode mode, int size)
    {
        using var det = new DlibFaceDetector();
        using var img = TestMedia.Read(FrameOf(video));
        var (_, lm) = TestMedia.Face(img, det);
        using var face = new FfhqAligner(size).Align(img, lm);
        using var pasted = img.Clone();
        using var same = face.Crop.Clone();
        FacePaster.Paste(pasted, face, same, mode);

        using var head = HeadPixels(img, face);
        double inFace = TestMedia.MeanAbsDiff(img[face.FrameRegion], pasted[face.FrameRegion]);
        double underMask = TestMedia.MeanAbsDiff(img, pasted, head);
        Assert.True(inFace < 2.0, $"{video} {mode}: mean |diff| over the face region {inFace:F3}/255");
        Assert.True(underMask < 3.0, $"{video} {mode}: mean |diff| under the head mask {underMask:F3}/255");
        using var outside = Outside(img, face.FrameRegion);
        Assert.Equal(0.0, TestMedia.MeanAbsDiff(img, pasted, outside));
    }

    [Fact]
    public void AReusedBuffer_PastesWhatAFreshOneDoes_AcrossFaceSizes()
    {
        using var det = new DlibFaceDetector();
        using var img = TestMedia.Read(FrameOf("talk_d3.mp4"));
        var (_, lm) = TestMedia.Face(img, det);
        using var buffer = new PasteBuffer();
        // Large, small, then large again: the area grows once and later regions are views of part of it.
        foreach (var k in new[] { 1.0f, 0.5f, 1.0f, 0.7f })
        {
            var c = lm.Points.Aggregate(new Point2f(0, 0), (a, p) => new Point2f(a.X + p.X / 68, a.Y + p.Y / 68));
            var scaled = new FaceLandmarks(lm.Points.Select(p => new Point2f(c.X + (p.X - c.X) * k, c.Y + (p.Y - c.Y) * k)).ToArray());
            using var face = new FfhqAligner(64, sharp: false).Align(img, scaled);
            using var crop = face.Crop.Clone();
            FaceObfuscation.Blur(crop);
            using var fresh = img.Clone();
            using var reused = img.Clone();
            FacePaster.Paste(fresh, face, crop, BlendMode.Feather);
            FacePaster.Paste(reused, face, crop, BlendMode.Feather, buffer);
            Assert.Equal(0.0, TestMedia.MeanAbsDiff(fresh, reused));
            Assert.True(TestMedia.MeanAbsDiff(img, reused) > 0.5, $"scale {k}: nothing was pasted");
            // A blurred crop pasted coarsely (warped at reduced resolution, enlarged by a linear resize) is the same
            // picture to within rounding, touches nothing outside the face's region, and a reused buffer changes nothing.
            using var smooth = img.Clone();
            using var smoothReused = img.Clone();
            FacePaster.Paste(smooth, face, crop, BlendMode.Feather, smooth: true);
            FacePaster.Paste(smoothReused, face, crop, BlendMode.Feather, buffer, smooth: true);
            Assert.Equal(0.0, TestMedia.MeanAbsDiff(smooth, smoothReused));
            double maxDiff = Cv2.Norm(fresh, smooth, NormTypes.INF);
            Assert.True(TestMedia.MeanAbsDiff(fresh, smooth) < 0.1 && maxDiff <= 4, $"scale {k}: mean {TestMedia.MeanAbsDiff(fresh, smooth):F3}, max {maxDiff}");
            using var outside = Outside(img, face.FrameRegion);
            Assert.Equal(0.0, TestMedia.MeanAbsDiff(img, smooth, outside));
        }
    }

    [Fact]
    public void PastedContentReplacesTheHeadAndStaysInTheRegion()
    {
        using var det = new DlibFaceDetector();
        using var img = TestMedia.Read(FrameOf("talk_d3.mp4"));
        var (box, lm) = TestMedia.Face(img, det);
        using var face = new FfhqAligner().Align(img, lm);
        using var green = new Mat(256, 256, MatType.CV_8UC3, new Scalar(0, 255, 0));
        using var pasted = img.Clone();
        FacePaster.Paste(pasted, face, green, BlendMode.Feather);

        if (Environment.GetEnvironmentVariable("DEID_FACES_DUMP") is { Length: > 0 } dump)
        {
            Cv2.ImWrite(Path.Combine(dump, "crop.png"), face.Crop);
            Cv2.ImWrite(Path.Combine(dump, "pasted.png"), pasted);
        }

        var c = pasted.At<Vec3b>((int)box.CenterY, (int)box.CenterX);
        Assert.Equal(new Vec3b(0, 255, 0), c);
        using var outside = Outside(img, face.FrameRegion);
        Assert.Equal(0.0, TestMedia.MeanAbsDiff(img, pasted, outside));
        // crop corners are background, outside the head mask
        var corner = face.TransformToFrame([new Point2f(4, 4)])[0];
        if (corner.X >= 0 && corner.Y >= 0 && corner.X < img.Width && corner.Y < img.Height)
            Assert.Equal(img.At<Vec3b>((int)corner.Y, (int)corner.X), pasted.At<Vec3b>((int)corner.Y, (int)corner.X));
        // hair above the eyes is covered too
        var forehead = face.TransformToFrame([new Point2f(128, 40)])[0];
        Assert.Equal(new Vec3b(0, 255, 0), pasted.At<Vec3b>((int)forehead.Y, (int)forehead.X));
    }

    [Fact]
    public void ColorMatchPullsTheNewCropTowardsTheOriginalColours()
    {
        using var det = new DlibFaceDetector();
        using var img = TestMedia.Read(FrameOf("talk_d3.mp4"));
        var (_, lm) = TestMedia.Face(img, det);
        using var face = new FfhqAligner().Align(img, lm);
        using var tinted = new Mat();
        Cv2.Add(face.Crop, new Scalar(60, 0, -40), tinted);
        using var feather = img.Clone();
        using var matched = img.Clone();
        FacePaster.Paste(feather, face, tinted, BlendMode.Feather);
        FacePaster.Paste(matched, face, tinted, BlendMode.ColorMatch);
        using var head = HeadPixels(img, face);
        double dFeather = TestMedia.MeanAbsDiff(img, feather, head);
        double dMatched = TestMedia.MeanAbsDiff(img, matched, head);
        Assert.True(dFeather > 20, $"tint visible without matching: {dFeather:F2}");
        Assert.True(dMatched < 6, $"tint removed by colour matching: {dMatched:F2}");
    }

    [Fact]
    public void PoissonBlendsAModifiedCropWithoutTouchingTheRestOfTheFrame()
    {
        using var det = new DlibFaceDetector();
        using var img = TestMedia.Read(FrameOf("talk_d3.mp4"));
        var (_, lm) = TestMedia.Face(img, det);
        using var face = new FfhqAligner().Align(img, lm);
        using var blurred = face.Crop.Clone();
        FaceObfuscation.Blur(blurred);
        using var pasted = img.Clone();
        FacePaster.Paste(pasted, face, blurred, BlendMode.Poisson);
        using var head = HeadPixels(img, face);
        Assert.True(TestMedia.MeanAbsDiff(img, pasted, head) > 5);
        using var outside = Outside(img, face.FrameRegion);
        Assert.Equal(0.0, TestMedia.MeanAbsDiff(img, pasted, outside));
    }

    [Fact]
    public void RejectsACropOfTheWrongSize()
    {
        using var img = new Mat(300, 300, MatType.CV_8UC3, Scalar.All(90));
        var pts = new Point2f[68];
        for (int i = 0; i < 68; i++) pts[i] = new Point2f(150, 150);
        for (int i = 36; i < 42; i++) pts[i] = new Point2f(130, 140);
        for (int i = 42; i < 48; i++) pts[i] = new Point2f(170, 140);
        pts[48] = new Point2f(135, 185); pts[54] = new Point2f(165, 185);
        using var face = new FfhqAligner(128).Align(img, new FaceLandmarks(pts));
        using var wrong = new Mat(256, 256, MatType.CV_8UC3);
        var ex = Assert.Throws<ArgumentException>(() => FacePaster.Paste(img, face, wrong));
        Assert.Contains("128x128", ex.Message);
    }
}

public class ObfuscationTests
{
    private static AlignedFace AlignedTalkFace(out Mat frame)
    {
        using var det = new DlibFaceDetector();
        frame = TestMedia.Read(TestMedia.Frames("talk_d3.mp4", 6, 60)[1]);
        var (_, lm) = TestMedia.Face(frame, det);
        return new FfhqAligner().Align(frame, lm);
    }

    private static double Sharpness(Mat bgr)
    {
        using var grey = new Mat();
        Cv2.CvtColor(bgr, grey, ColorConversionCodes.BGR2GRAY);
        using var lap = new Mat();
        Cv2.Laplacian(grey, lap, MatType.CV_64F);
        Cv2.MeanStdDev(lap, out _, out var std);
        return std.Val0;
    }

    [Fact]
    public void BlurLeavesNoDetectableFace()
    {
        using var face = AlignedTalkFace(out var frame);
        using var frameOwner = frame;
        using var det = new DlibFaceDetector(upsample: 1);
        Assert.NotEmpty(det.Detect(face.Crop));
        using var crop = face.Crop.Clone();
        FaceObfuscation.Blur(crop);
        Assert.Equal(face.Crop.Size(), crop.Size());
        Assert.Empty(det.Detect(crop));
        Assert.True(TestMedia.MeanAbsDiff(face.Crop, crop) > 8);
        Assert.True(Sharpness(crop) < 0.15 * Sharpness(face.Crop), $"{Sharpness(crop):F2} vs {Sharpness(face.Crop):F2}");
        // the overall colour survives
        Assert.True(Math.Abs(Cv2.Mean(crop).Val2 - Cv2.Mean(face.Crop).Val2) < 10);
    }

    [Fact]
    public void PixelateMakesUniformBlocks()
    {
        using var face = AlignedTalkFace(out var frame);
        using var frameOwner = frame;
        using var crop = face.Crop.Clone();
        FaceObfuscation.Pixelate(crop, 8);
        using var det = new DlibFaceDetector(upsample: 1);
        Assert.Empty(det.Detect(crop));
        for (int by = 0; by < 8; by++)
            for (int bx = 0; bx < 8; bx++)
            {
                using var block = new Mat(crop, new Rect(bx * 32, by * 32, 32, 32));
                Cv2.MeanStdDev(block, out _, out var std);
                Assert.Equal(0.0, std.Val0 + std.Val1 + std.Val2);
            }
        Assert.True(TestMedia.MeanAbsDiff(face.Crop, crop) > 5);
        Assert.Throws<ArgumentOutOfRangeException>(() => FaceObfuscation.Pixelate(crop, 0));
    }

    [Fact]
    public void BlurRegionIsConfinedToTheRegion()
    {
        using var det = new DlibFaceDetector();
        using var img = TestMedia.Read(TestMedia.Frames("talk_d3.mp4", 6, 60)[1]);
        var box = det.Detect(img)[0];
        var region = box.Scale(1.6f).ToRect();
        using var out1 = img.Clone();
        FaceObfuscation.BlurRegion(out1, region);
        var clipped = region & new Rect(0, 0, img.Width, img.Height);
        using var outside = new Mat(img.Size(), MatType.CV_8UC1, Scalar.All(255));
        outside[clipped].SetTo(Scalar.All(0));
        Assert.Equal(0.0, TestMedia.MeanAbsDiff(img, out1, outside));
        Assert.Empty(det.Detect(out1));
        var inner = box.ToRect();
        Assert.True(TestMedia.MeanAbsDiff(img[inner], out1[inner]) > 8);

        // partly outside the frame and empty regions are fine
        using var out2 = img.Clone();
        FaceObfuscation.BlurRegion(out2, new Rect(-50, -50, 120, 120));
        using var outside2 = new Mat(img.Size(), MatType.CV_8UC1, Scalar.All(255));
        outside2[new Rect(0, 0, 70, 70)].SetTo(Scalar.All(0));
        Assert.Equal(0.0, TestMedia.MeanAbsDiff(img, out2, outside2));
        FaceObfuscation.BlurRegion(out2, new Rect(img.Width + 10, 0, 50, 50));
        FaceObfuscation.BlurRegion(out2, new Rect(10, 10, 0, 0));
    }

    /// <summary>
    /// The blend, eight and four pixels at a time, against the per-pixel formula: runs of α 0, 255 and mixed values
    /// (runs of 6 leave no group of eight whole, runs of 12 some of each kind), a width no multiple of four, and a
    /// destination that is a view into a larger image whose pixels beside it stay untouched.
    /// </summary>
    [Theory]
    [InlineData(6)]
    [InlineData(12)]
    public void BlendMatchesThePerPixelFormula_AndWritesOnlyItsRegion(int run)
    {
        const int width = 67, height = 9;
        var rng = new Random(7);
        using var warped = new Mat(height, width, MatType.CV_8UC4);
        using var frame = new Mat(height + 2, width + 2, MatType.CV_8UC3);
        var wb = new byte[height * width * 4];
        rng.NextBytes(wb);
        for (var i = 0; i < width * height; i++)
        {
            // Runs of pixels share a kind: outside (0), inside (255) or rim (any value).
            var kind = i / run % 3;
            if (kind < 2) wb[4 * i + 3] = kind == 0 ? (byte)0 : (byte)255;
        }
        for (var y = 0; y < height; y++) System.Runtime.InteropServices.Marshal.Copy(wb, y * width * 4, warped.Ptr(y), width * 4);
        var fb = new byte[(height + 2) * (width + 2) * 3];
        rng.NextBytes(fb);
        for (var y = 0; y < height + 2; y++) System.Runtime.InteropServices.Marshal.Copy(fb, y * (width + 2) * 3, frame.Ptr(y), (width + 2) * 3);
        using var before = frame.Clone();

        using (var region = new Mat(frame, new Rect(1, 1, width, height))) FacePaster.Blend(warped, region);

        for (var y = 0; y < height + 2; y++)
            for (var x = 0; x < width + 2; x++)
            {
                var got = frame.At<Vec3b>(y, x);
                var was = before.At<Vec3b>(y, x);
                Vec3b want = was;
                if (x >= 1 && x <= width && y >= 1 && y <= height)
                {
                    var w = warped.At<Vec4b>(y - 1, x - 1);
                    int a = w.Item3, b = 255 - a;
                    want = new Vec3b((byte)((w.Item0 * a + was.Item0 * b + 127) / 255), (byte)((w.Item1 * a + was.Item1 * b + 127) / 255),
                        (byte)((w.Item2 * a + was.Item2 * b + 127) / 255));
                }
                Assert.True(want == got, $"pixel ({x}, {y}): {got} instead of {want}");
            }
    }
}
